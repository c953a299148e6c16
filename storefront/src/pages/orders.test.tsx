import { describe, expect, it, vi } from 'vitest';
import { act, screen, waitFor, within } from '@testing-library/react';
import { FakeWebSocket, mockApi, order, renderAt, signedIn } from '../test/helpers';
import { AUTH_KEY } from '../state/auth';
import { OrdersSocket } from '../lib/ordersSocket';

describe('my orders', () => {
  it('lists the orders and turns one paid when the WebSocket says so, without reloading', async () => {
    FakeWebSocket.install();
    const token = signedIn();
    const { calls } = mockApi({
      'GET /orders': { body: [order({ id: 12, status: 'pending', total: 89.99 }), order({ id: 11, status: 'paid' })] },
    });
    renderAt('/orders');
    const row = await screen.findByRole('row', { name: /#12/ });
    expect(within(row).getByText('Pending payment')).toBeInTheDocument();
    expect(within(row).getByText('$89.99')).toBeInTheDocument();

    const ws = FakeWebSocket.last();
    // The token rides as a subprotocol, out of the URL (and so out of access logs).
    expect(ws.url).toBe(`ws://${window.location.host}/api/ws/orders`);
    expect(ws.protocols).toEqual(['archway.bearer', token]);
    expect(screen.getByText('Connecting to live updates…')).toBeInTheDocument();
    ws.open();
    expect(screen.getByText('Live updates on')).toBeInTheDocument();
    const fetchesBefore = calls.length;

    ws.push({ type: 'order_status', order_id: 12, status: 'paid', updated_at: '2026-02-01T10:00:05Z' });
    expect(within(screen.getByRole('row', { name: /#12/ })).getByText('Paid')).toBeInTheDocument();
    expect(screen.getByText('Order #12 is now paid.')).toBeInTheDocument();
    expect(calls.length).toBe(fetchesBefore); // the update came over the socket, not a refetch
  });

  it('reloads the list for an order it has not seen, and after a reconnect', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    FakeWebSocket.install();
    signedIn();
    let list = [order({ id: 12 })];
    const { calls } = mockApi({ 'GET /orders': () => ({ body: list }) });
    renderAt('/orders');
    await screen.findByRole('row', { name: /#12/ });
    FakeWebSocket.last().open();

    list = [order({ id: 13 }), order({ id: 12 })];
    FakeWebSocket.last().push({ type: 'order_status', order_id: 13, status: 'pending' });
    expect(await screen.findByRole('row', { name: /#13/ })).toBeInTheDocument();

    const listFetches = () => calls.filter((c) => c.path === '/orders?limit=100').length;
    const before = listFetches();
    FakeWebSocket.last().drop();
    expect(screen.getByText('Live updates interrupted, reconnecting…')).toBeInTheDocument();
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1100);
    });
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().open();
    await waitFor(() => expect(listFetches()).toBe(before + 1));
    vi.useRealTimers();
  });

  it('sends the shopper to log in when the socket closes for an expired token', async () => {
    FakeWebSocket.install();
    signedIn();
    mockApi({ 'GET /orders': { body: [order({ id: 12 })] } });
    renderAt('/orders');
    await screen.findByRole('row', { name: /#12/ });
    FakeWebSocket.last().open();
    FakeWebSocket.last().drop(1008);
    expect(await screen.findByText('Your session has expired. Please log in again.')).toBeInTheDocument();
    expect(window.location.pathname).toBe('/login');
  });

  it('sends the shopper to log in when the token is refused', async () => {
    FakeWebSocket.install();
    signedIn();
    mockApi({ 'GET /orders': { status: 401, body: { error: 'invalid token', request_id: 'a' } } });
    renderAt('/orders');
    expect(await screen.findByText('Your session has expired. Please log in again.')).toBeInTheDocument();
    expect(window.location.pathname).toBe('/login');
    expect(localStorage.getItem(AUTH_KEY)).toBeNull();
  });
});

describe('order page', () => {
  it('shows the order and its live status, and lets a pending order be paid', async () => {
    FakeWebSocket.install();
    signedIn();
    mockApi({
      'GET /orders/:id': { body: order({ id: 21, items: [{ product_id: 3, quantity: 2 }], total: 399.98 }) },
      'GET /products/:id': { body: { id: 3, name: 'Auriculares Bluetooth', price: 199.99, category: 'Electronics', inventory: 200, description: '' } },
    });
    renderAt('/orders/21');
    expect(await screen.findByText('Pending payment')).toBeInTheDocument();
    expect(await screen.findByRole('link', { name: 'Auriculares Bluetooth' })).toHaveAttribute('href', '/products/3');
    expect(screen.getByText('Ana García, Calle Mayor 1, 28013 Madrid, Spain')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Pay $399.98' })).toBeInTheDocument();

    FakeWebSocket.last().open();
    FakeWebSocket.last().push({ type: 'order_status', order_id: 99, status: 'cancelled' }); // another order
    expect(screen.getByText('Pending payment')).toBeInTheDocument();
    FakeWebSocket.last().push({ type: 'order_status', order_id: 21, status: 'paid' });
    expect(screen.getByText('Paid')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /^Pay/ })).not.toBeInTheDocument();
  });

  it('closes the socket when the page goes away', async () => {
    FakeWebSocket.install();
    signedIn();
    mockApi({ 'GET /orders/:id': { body: order({ id: 21 }) } });
    const { unmount } = renderAt('/orders/21');
    await screen.findByText('Pending payment');
    const ws = FakeWebSocket.last();
    unmount();
    expect(ws.closed).toBe(true);
  });
});

describe('OrdersSocket', () => {
  it('backs off exponentially and stops for good on stop()', () => {
    vi.useFakeTimers();
    FakeWebSocket.install();
    const states: string[] = [];
    const s = new OrdersSocket('t', { onUpdate: () => {}, onState: (x) => states.push(x) }, { protocol: 'http:', host: 'x' });
    s.start();
    FakeWebSocket.last().drop();
    vi.advanceTimersByTime(999);
    expect(FakeWebSocket.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().drop();
    vi.advanceTimersByTime(1999);
    expect(FakeWebSocket.instances).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(FakeWebSocket.instances).toHaveLength(3);
    s.stop();
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(states.at(-1)).toBe('closed');
    vi.useRealTimers();
  });

  it('falls back to ?token= when the subprotocol handshake keeps failing, and stops on 1008', () => {
    vi.useFakeTimers();
    FakeWebSocket.install();
    let unauthorized = 0;
    const s = new OrdersSocket('tok', { onUpdate: () => {}, onUnauthorized: () => unauthorized++ }, { protocol: 'https:', host: 'shop' });
    s.start();
    expect(FakeWebSocket.last().url).toBe('wss://shop/api/ws/orders');
    FakeWebSocket.last().drop();
    vi.advanceTimersByTime(1000);
    expect(FakeWebSocket.last().protocols).toEqual(['archway.bearer', 'tok']);
    FakeWebSocket.last().drop();
    vi.advanceTimersByTime(2000);
    expect(FakeWebSocket.last().url).toBe('wss://shop/api/ws/orders?token=tok');
    expect(FakeWebSocket.last().protocols).toEqual([]);
    FakeWebSocket.last().open();
    FakeWebSocket.last().drop(1008);
    expect(unauthorized).toBe(1);
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(3);
    vi.useRealTimers();
  });
});
