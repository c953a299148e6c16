import { describe, expect, it } from 'vitest';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { mockApi, productsHandler, renderAt } from '../test/helpers';
import { CART_KEY } from '../state/cart';

const productPaths = (calls: { path: string }[]) => calls.map((c) => c.path).filter((p) => p.includes('limit=8'));

describe('catalog', () => {
  it('lists a page of products with the total and pagination', async () => {
    mockApi({ 'GET /products': productsHandler() });
    renderAt('/');
    const list = await screen.findByRole('list', { name: 'Products' });
    expect(within(list).getAllByRole('listitem')).toHaveLength(8);
    expect(screen.getByRole('status')).toHaveTextContent('10 products, page 1 of 2');
    expect(screen.getByRole('link', { name: 'Laptop Gaming' })).toHaveAttribute('href', '/products/1');
    expect(screen.getAllByText('$1,299.99')).toHaveLength(1);
    const nav = screen.getByRole('navigation', { name: 'Pagination' });
    expect(within(nav).getByRole('link', { name: 'Page 1' })).toHaveAttribute('aria-current', 'page');

    await userEvent.click(within(nav).getByRole('link', { name: /Next/ }));
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('page 2 of 2'));
    expect(screen.getByRole('heading', { level: 1 })).toHaveFocus();
    expect(within(screen.getByRole('list', { name: 'Products' })).getAllByRole('listitem')).toHaveLength(2);
    expect(window.location.search).toBe('?page=2');
  });

  it('filters by category and searches, keeping the state in the URL', async () => {
    const { calls } = mockApi({ 'GET /products': productsHandler() });
    renderAt('/');
    await screen.findByRole('list', { name: 'Products' });
    const select = screen.getByLabelText('Category');
    await waitFor(() => expect(within(select).getByRole('option', { name: 'Furniture' })).toBeInTheDocument());
    await userEvent.selectOptions(select, 'Furniture');
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('3 products'));
    expect(screen.getByRole('heading', { level: 1 })).toHaveTextContent('Furniture');
    expect(window.location.search).toBe('?category=Furniture');

    await userEvent.type(screen.getByRole('searchbox', { name: 'Search products' }), 'gaming{Enter}');
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('1 product matching “gaming”'));
    expect(screen.getByRole('link', { name: 'Silla Gaming' })).toBeInTheDocument();
    expect(productPaths(calls).at(-1)).toBe('/products?category=Furniture&search=gaming&page=1&limit=8');
  });

  it('says when nothing matches and offers the full catalog', async () => {
    mockApi({ 'GET /products': productsHandler() });
    renderAt('/?search=zzz');
    expect(await screen.findByText(/No products found/)).toBeInTheDocument();
    await userEvent.click(screen.getByRole('link', { name: 'Show all products' }));
    expect(await screen.findByRole('list', { name: 'Products' })).toBeInTheDocument();
  });

  it('shows a 429 with the wait from Retry-After', async () => {
    mockApi({ 'GET /products': { status: 429, body: { error: 'rate limit exceeded', request_id: 'r9' }, headers: { 'Retry-After': '30' } } });
    renderAt('/');
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Too many requests, try again in 30 s.');
    expect(alert).toHaveTextContent('Reference: r9');
  });
});

describe('product page', () => {
  it('adds the chosen quantity to the cart kept in localStorage', async () => {
    mockApi({ 'GET /products/:id': (c) => ({ body: { ...productsHandlerBody(c.path) } }) });
    renderAt('/products/5');
    expect(await screen.findByRole('heading', { level: 1, name: 'Silla Gaming' })).toBeInTheDocument();
    expect(screen.getByText('25 in stock')).toBeInTheDocument();
    const qty = screen.getByLabelText('Quantity');
    await userEvent.clear(qty);
    await userEvent.type(qty, '2');
    await userEvent.click(screen.getByRole('button', { name: 'Add to cart' }));
    expect(await screen.findByText(/Added 2 × Silla Gaming to your cart\./)).toBeInTheDocument();
    expect(JSON.parse(localStorage.getItem(CART_KEY)!)).toEqual([
      { productId: 5, name: 'Silla Gaming', price: 399.99, inventory: 25, quantity: 2 },
    ]);
    expect(screen.getByRole('link', { name: 'Cart, 2 items' })).toBeInTheDocument();
  });

  it('shows not found for an unknown product', async () => {
    mockApi({ 'GET /products/:id': { status: 404, body: { error: 'product not found', request_id: 'x' } } });
    renderAt('/products/999');
    expect(await screen.findByRole('heading', { level: 1, name: 'Product not found' })).toBeInTheDocument();
  });
});

import { catalog } from '../test/helpers';
function productsHandlerBody(path: string) {
  const id = parseInt(path.split('/').pop()!, 10);
  return catalog.find((p) => p.id === id);
}

describe('catalog errors', () => {
  it('offers to try again after a failure, and recovers', async () => {
    let fail = true;
    const ok = productsHandler();
    mockApi({
      'GET /products': (c) => (fail ? { status: 503, body: { error: 'upstream unavailable', request_id: 'u1' } } : ok(c)),
    });
    renderAt('/');
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('The shop is temporarily unavailable. Please try again in a moment.');
    expect(screen.queryByText('Loading products…')).not.toBeInTheDocument();
    fail = false;
    await userEvent.click(within(alert).getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('list', { name: 'Products' })).toBeInTheDocument();
    await waitFor(() => expect(within(screen.getByLabelText('Category')).getByRole('option', { name: 'Furniture' })).toBeInTheDocument());
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });
});

describe('catalog while loading', () => {
  it('describes the results on screen, not the search still loading', async () => {
    let release: () => void = () => {};
    const ok = productsHandler();
    mockApi({
      'GET /products': async (c) => {
        if (c.path.includes('search=gaming')) await new Promise<void>((r) => (release = r));
        return ok(c);
      },
    });
    renderAt('/');
    await screen.findByRole('list', { name: 'Products' });
    await userEvent.type(screen.getByRole('searchbox', { name: 'Search products' }), 'gaming{Enter}');
    await waitFor(() => expect(document.querySelector('.catalog')).toHaveAttribute('aria-busy', 'true'));
    expect(screen.getByRole('status')).toHaveTextContent('10 products, page 1 of 2');
    release();
    await waitFor(() => expect(screen.getByRole('status')).toHaveTextContent('2 products matching “gaming”'));
  });
});
