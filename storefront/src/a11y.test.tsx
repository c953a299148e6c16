import { beforeEach, describe, expect, it, vi } from 'vitest';
import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import axe from 'axe-core';
import { FakeWebSocket, mockApi, order, productsHandler, renderAt, signedIn, withCart } from './test/helpers';

// Structure rules (names, labels, roles, landmarks, headings). Contrast needs real rendering and
// is checked in Chromium by the browser tests.
async function violations(): Promise<string[]> {
  const r = await axe.run(document.body, { rules: { 'color-contrast': { enabled: false } } });
  return r.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

describe('accessibility (axe-core)', () => {
  beforeEach(() => {
    // axe probes fonts with a canvas, which jsdom lacks; without one it skips that probe.
    vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
  });

  it('catalog', async () => {
    mockApi({ 'GET /products': productsHandler() });
    renderAt('/');
    await screen.findByRole('list', { name: 'Products' });
    expect(await violations()).toEqual([]);
  });

  it('register with errors shown', async () => {
    mockApi({});
    renderAt('/register');
    await userEvent.click(screen.getByRole('button', { name: 'Create account' }));
    expect(await violations()).toEqual([]);
  });

  it('checkout with a declined card', async () => {
    signedIn();
    withCart([{ productId: 1, name: 'Laptop Gaming', price: 1299.99, inventory: 50, quantity: 1 }]);
    mockApi({});
    renderAt('/checkout');
    expect(await violations()).toEqual([]);
  });

  it('my orders', async () => {
    FakeWebSocket.install();
    signedIn();
    mockApi({ 'GET /orders': { body: [order()] } });
    renderAt('/orders');
    await screen.findByRole('table');
    expect(await violations()).toEqual([]);
  });

  it('keyboard: the skip link comes first and leads to main', async () => {
    mockApi({ 'GET /products': productsHandler() });
    renderAt('/');
    await screen.findByRole('list', { name: 'Products' });
    (document.activeElement as HTMLElement | null)?.blur(); // as on a fresh page load
    await userEvent.tab();
    expect(screen.getByRole('link', { name: 'Skip to content' })).toHaveFocus();
    expect(screen.getByRole('link', { name: 'Skip to content' })).toHaveAttribute('href', '#main');
    expect(document.getElementById('main')).toHaveAttribute('tabindex', '-1');
  });
});
