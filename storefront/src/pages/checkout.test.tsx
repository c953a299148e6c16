import { describe, expect, it } from 'vitest';
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { FakeWebSocket, mockApi, order, renderAt, signedIn, withCart } from '../test/helpers';
import { AUTH_KEY } from '../state/auth';
import { CART_KEY } from '../state/cart';

const line = { productId: 1, name: 'Laptop Gaming', price: 1299.99, inventory: 50, quantity: 2 };

async function fillAddress() {
  await userEvent.type(screen.getByLabelText(/Street and number/), 'Calle Mayor 1');
  await userEvent.type(screen.getByLabelText(/Postal code/), '28013');
  await userEvent.type(screen.getByLabelText(/City/), 'Madrid');
  await userEvent.type(screen.getByLabelText(/Country/), 'Spain');
}

async function useCard(label: RegExp) {
  await userEvent.click(screen.getByRole('button', { name: label }));
}

describe('checkout', () => {
  it('needs a login, and comes back to checkout after it', async () => {
    withCart([line]);
    mockApi({});
    renderAt('/checkout');
    await waitFor(() => expect(window.location.pathname).toBe('/login'));
    expect(window.location.search).toBe('?next=%2Fcheckout');
  });

  it('shows the simulator test cards and fills one in', async () => {
    signedIn();
    withCart([line]);
    mockApi({});
    renderAt('/checkout');
    for (const n of ['4242 4242 4242 4242', '4000 0000 0000 0002', '4000 0000 0000 9995']) {
      expect(screen.getByText(n)).toBeInTheDocument();
    }
    await useCard(/Use test card 4242/);
    expect(screen.getByLabelText(/Card number/)).toHaveValue('4242 4242 4242 4242');
    expect(screen.getByLabelText(/Card number/)).toHaveFocus();
    expect((screen.getByLabelText(/Expiry date/) as HTMLInputElement).value).toMatch(/^12\/\d\d$/);
  });

  it('validates before sending and focuses the first problem', async () => {
    signedIn();
    withCart([line]);
    const { calls } = mockApi({});
    renderAt('/checkout');
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay \$2,599\.98/ }));
    expect(screen.getByLabelText(/Street and number/)).toHaveFocus();
    expect(screen.getByLabelText(/Street and number/)).toHaveAccessibleDescription('Enter the street and number.');
    expect(screen.getByLabelText(/Card number/)).toHaveAttribute('aria-invalid', 'true');
    expect(calls).toHaveLength(0);
  });

  it('places the order, pays it, empties the cart and shows the paid order', async () => {
    FakeWebSocket.install();
    const token = signedIn();
    withCart([line]);
    const { calls } = mockApi({
      'POST /orders': { status: 201, body: order({ id: 55, total: 2599.98, items: [{ product_id: 1, quantity: 2 }] }) },
      'POST /orders/:id/pay': { body: order({ id: 55, total: 2599.98, status: 'paid' }) },
      'GET /orders/:id': { body: order({ id: 55, total: 2599.98, status: 'paid' }) },
    });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    expect(await screen.findByRole('heading', { level: 1, name: 'Order #55' })).toBeInTheDocument();
    expect(await screen.findByText('Thank you! Your order is placed.')).toBeInTheDocument();
    expect(screen.getByText('Paid')).toBeInTheDocument();
    expect(window.location.pathname).toBe('/orders/55');
    expect(localStorage.getItem(CART_KEY)).toBeNull();

    const create = calls.find((c) => c.method === 'POST' && c.path === '/orders')!;
    expect(create.headers.Authorization).toBe(`Bearer ${token}`);
    expect(create.body).toEqual({
      items: [{ product_id: 1, quantity: 2 }],
      shipping_address: 'Ana García, Calle Mayor 1, 28013 Madrid, Spain',
    });
    const pay = calls.find((c) => c.path === '/orders/55/pay')!;
    expect(pay.body).toEqual({ card: { number: '4242424242424242', exp_month: 12, exp_year: expect.any(Number), cvc: '123' } });
  });

  it('on 402 shows the decline, keeps the order pending and pays the same order with another card', async () => {
    FakeWebSocket.install();
    signedIn();
    withCart([line]);
    let payCalls = 0;
    const { calls } = mockApi({
      'POST /orders': { status: 201, body: order({ id: 56, total: 2599.98 }) },
      'POST /orders/:id/pay': (c) => {
        payCalls++;
        const number = (c.body as { card: { number: string } }).card.number;
        return number === '4000000000009995'
          ? { status: 402, body: { error: 'insufficient funds', request_id: 'p1' } }
          : { body: order({ id: 56, status: 'paid' }) };
      },
      'GET /orders/:id': { body: order({ id: 56, status: 'paid' }) },
    });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4000 0000 0000 9995/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Payment declined: insufficient funds. Your order is saved as pending; try another card.');
    expect(screen.getByText(/Order #56 is saved and waiting for payment/)).toBeInTheDocument();
    expect(screen.getByLabelText(/Street and number/)).toBeDisabled();
    expect(localStorage.getItem(CART_KEY)).not.toBeNull();

    await userEvent.clear(screen.getByLabelText(/Card number/));
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /^Pay \$2,599\.98/ }));
    expect(await screen.findByRole('heading', { level: 1, name: 'Order #56' })).toBeInTheDocument();
    expect(calls.filter((c) => c.method === 'POST' && c.path === '/orders')).toHaveLength(1);
    expect(payCalls).toBe(2);
  });

  it('explains a 409 (stock) and links back to the cart', async () => {
    signedIn();
    withCart([line]);
    mockApi({ 'POST /orders': { status: 409, body: { error: 'insufficient stock for product 1', request_id: 'o1' } } });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Not enough stock for an item in your cart (insufficient stock for product 1).');
    expect(screen.getByRole('link', { name: 'Review your cart' })).toHaveAttribute('href', '/cart');
  });

  it('shows "too many requests, try again in N s" on 429 from Retry-After', async () => {
    signedIn();
    withCart([line]);
    mockApi({ 'POST /orders': { status: 429, body: { error: 'rate limit exceeded', request_id: 'o2' }, headers: { 'Retry-After': '7' } } });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Too many requests, try again in 7 s.');
  });

  it('on 401 forgets the session and asks to log in again', async () => {
    signedIn();
    withCart([line]);
    mockApi({ 'POST /orders': { status: 401, body: { error: 'token expired', request_id: 'o3' } } });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    expect(await screen.findByText('Your session has expired. Please log in again.')).toBeInTheDocument();
    expect(window.location.pathname).toBe('/login');
    expect(localStorage.getItem(AUTH_KEY)).toBeNull();
    expect(localStorage.getItem(CART_KEY)).not.toBeNull();
  });
});

describe('cart', () => {
  it('changes quantities, totals in cents and removes lines', async () => {
    withCart([line, { productId: 8, name: 'Mouse Inalámbrico', price: 59.99, inventory: 150, quantity: 1 }]);
    renderAt('/cart');
    expect(screen.getByText('$2,659.97')).toBeInTheDocument();
    const qty = screen.getByLabelText('Quantity of Mouse Inalámbrico');
    await userEvent.clear(qty);
    await userEvent.type(qty, '3');
    expect(screen.getByText('$2,779.95')).toBeInTheDocument();
    await userEvent.click(screen.getByRole('button', { name: 'Remove Laptop Gaming' }));
    expect(screen.getByText('$179.97', { selector: 'strong' })).toBeInTheDocument();
    expect(JSON.parse(localStorage.getItem(CART_KEY)!)).toHaveLength(1);
    expect(screen.getByRole('link', { name: 'Cart, 3 items' })).toBeInTheDocument();
  });

  it('caps a quantity at the stock', async () => {
    withCart([{ ...line, inventory: 3, quantity: 1 }]);
    renderAt('/cart');
    const qty = screen.getByLabelText('Quantity of Laptop Gaming');
    await userEvent.clear(qty);
    await userEvent.type(qty, '9');
    await userEvent.tab();
    expect(qty).toHaveValue(3);
  });
});

describe('checkout card errors from the server', () => {
  it('shows a 400 naming the card number at that field', async () => {
    signedIn();
    withCart([line]);
    mockApi({
      'POST /orders': { status: 201, body: order({ id: 57 }) },
      'POST /orders/:id/pay': { status: 400, body: { error: 'card.number: fails the Luhn check', field: 'card.number', request_id: 'c1' } },
    });
    renderAt('/checkout');
    await fillAddress();
    await useCard(/Use test card 4242/);
    await userEvent.click(screen.getByRole('button', { name: /Place order and pay/ }));
    await waitFor(() => expect(screen.getByLabelText(/Card number/)).toHaveFocus());
    expect(screen.getByLabelText(/Card number/)).toHaveAccessibleDescription('Card.number: fails the Luhn check.');
  });
});
