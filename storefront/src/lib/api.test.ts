import { describe, expect, it, vi } from 'vitest';
import { ApiError, listCategories, listProducts, request } from './api';
import { mockApi, productsHandler } from '../test/helpers';

describe('request', () => {
  it('turns a JSON error into an ApiError with status, request id, field and Retry-After', async () => {
    mockApi({
      'POST /auth/register': { status: 400, body: { error: 'email: required', field: 'email', request_id: 'r-1' } },
      'GET /products': { status: 429, body: { error: 'rate limit exceeded', request_id: 'r-2' }, headers: { 'Retry-After': '9' } },
    });
    const e1 = await request('/auth/register', { method: 'POST', body: {} }).catch((e) => e);
    expect(e1).toBeInstanceOf(ApiError);
    expect(e1).toMatchObject({ status: 400, message: 'email: required', field: 'email', requestId: 'r-1' });
    const e2 = await request('/products').catch((e) => e);
    expect(e2).toMatchObject({ status: 429, retryAfter: 9, requestId: 'r-2' });
  });

  it('sends the bearer token and JSON body', async () => {
    const { calls } = mockApi({ 'POST /orders': { status: 201, body: { id: 1 } } });
    await request('/orders', { method: 'POST', body: { a: 1 }, token: 'tok' });
    expect(calls[0].headers).toMatchObject({ Authorization: 'Bearer tok', 'Content-Type': 'application/json' });
    expect(calls[0].body).toEqual({ a: 1 });
  });

  it('survives a non-JSON error body (a proxy page) and a network failure', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('<html>Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' })));
    await expect(request('/products')).rejects.toMatchObject({ status: 502, message: 'Bad Gateway' });
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(request('/products')).rejects.toMatchObject({ status: 0 });
  });
});

describe('listProducts', () => {
  it('reads the array, X-Total-Count and Link', async () => {
    const { calls } = mockApi({ 'GET /products': productsHandler() });
    const p = await listProducts({ category: 'Electronics', search: 'gaming', page: 1, limit: 8 });
    expect(calls[0].path).toBe('/products?category=Electronics&search=gaming&page=1&limit=8');
    expect(p).toMatchObject({ total: 1, hasNext: false, hasPrev: false });
    expect(p.products.map((x) => x.name)).toEqual(['Laptop Gaming']);
    const all = await listProducts({ page: 1, limit: 8 });
    expect(all).toMatchObject({ total: 10, hasNext: true });
  });

  it('collects the categories across pages', async () => {
    mockApi({ 'GET /products': productsHandler() });
    expect(await listCategories()).toEqual(['Electronics', 'Furniture']);
  });
});
