import type { AuthResponse, Card, Order, Product, ProductPage, User } from './types';

// Every API call goes to the same origin under /api: the gateway routes it to the right service
// (and the dev server proxies it to a gateway on :8080).
export const API_BASE = '/api';

/** An answer from the API that was not a 2xx, or a request that never got one. */
export class ApiError extends Error {
  readonly status: number; // 0 when the request never reached the server
  readonly requestId?: string;
  readonly field?: string;
  readonly retryAfter?: number; // seconds, from Retry-After on a 429 or 503
  readonly authenticated: boolean; // the request carried a token
  readonly body: Record<string, unknown>; // the JSON error body, for fields beyond error/field

  constructor(
    message: string,
    opts: {
      status: number;
      requestId?: string;
      field?: string;
      retryAfter?: number;
      authenticated?: boolean;
      body?: Record<string, unknown>;
    },
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = opts.status;
    this.requestId = opts.requestId;
    this.field = opts.field;
    this.retryAfter = opts.retryAfter;
    this.authenticated = opts.authenticated ?? false;
    this.body = opts.body ?? {};
  }
}

/** Parses Retry-After as delay-seconds or an HTTP date; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value == null || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return parseInt(v, 10);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  token?: string | null;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  data: T;
  headers: Headers;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(API_BASE + path, {
      method: opts.method ?? 'GET',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (err) {
    if ((err as Error)?.name === 'AbortError') throw err;
    throw new ApiError('network error', { status: 0, authenticated: !!opts.token });
  }
  const text = await res.text();
  let body: unknown = undefined;
  if (text !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!res.ok) {
    const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    const message = typeof b.error === 'string' && b.error !== '' ? b.error : res.statusText || `HTTP ${res.status}`;
    throw new ApiError(message, {
      status: res.status,
      requestId: (typeof b.request_id === 'string' ? b.request_id : undefined) ?? res.headers.get('X-Request-ID') ?? undefined,
      field: typeof b.field === 'string' ? b.field : undefined,
      retryAfter: parseRetryAfter(res.headers.get('Retry-After')),
      authenticated: !!opts.token,
      body: b,
    });
  }
  return { data: body as T, headers: res.headers };
}

/** Reads rel="next" / rel="prev" out of a Link header. */
export function parseLinkRels(link: string | null): Set<string> {
  const rels = new Set<string>();
  if (!link) return rels;
  for (const m of link.matchAll(/rel="?([^";]+)"?/g)) {
    for (const r of m[1].split(/\s+/)) rels.add(r);
  }
  return rels;
}

export interface ProductQuery {
  category?: string;
  search?: string;
  page?: number;
  limit?: number;
}

export async function listProducts(q: ProductQuery, signal?: AbortSignal): Promise<ProductPage> {
  const params = new URLSearchParams();
  if (q.category) params.set('category', q.category);
  if (q.search) params.set('search', q.search);
  if (q.page) params.set('page', String(q.page));
  if (q.limit) params.set('limit', String(q.limit));
  const qs = params.toString();
  const { data, headers } = await request<Product[]>(`/products${qs ? `?${qs}` : ''}`, { signal });
  const totalHeader = headers.get('X-Total-Count');
  const total = totalHeader != null && /^\d+$/.test(totalHeader) ? parseInt(totalHeader, 10) : null;
  const rels = parseLinkRels(headers.get('Link'));
  const page = q.page ?? 1;
  const limit = q.limit ?? 20;
  const products = Array.isArray(data) ? data : [];
  return {
    products,
    total,
    hasNext: rels.has('next') || (total != null && page * limit < total),
    hasPrev: rels.has('prev') || page > 1,
  };
}

/** Every category in the catalog (there is no categories endpoint, so they come from the products). */
export async function listCategories(signal?: AbortSignal): Promise<string[]> {
  const seen = new Map<string, string>();
  const limit = 100;
  for (let page = 1; page <= 10; page++) {
    const res = await listProducts({ page, limit }, signal);
    for (const p of res.products) {
      const key = p.category.toLocaleLowerCase();
      if (!seen.has(key)) seen.set(key, p.category);
    }
    if (!res.hasNext || res.products.length === 0) break;
  }
  return [...seen.values()].sort((a, b) => a.localeCompare(b));
}

export async function getProduct(id: string | number, signal?: AbortSignal): Promise<Product> {
  return (await request<Product>(`/products/${encodeURIComponent(String(id))}`, { signal })).data;
}

export interface RegisterInput {
  email: string;
  password: string;
  firstName: string;
  lastName: string;
}

export async function register(input: RegisterInput): Promise<AuthResponse> {
  return (await request<AuthResponse>('/auth/register', { method: 'POST', body: input })).data;
}

export async function login(email: string, password: string): Promise<AuthResponse> {
  return (await request<AuthResponse>('/auth/login', { method: 'POST', body: { email, password } })).data;
}

export async function me(token: string, signal?: AbortSignal): Promise<User> {
  return (await request<User>('/users/me', { token, signal })).data;
}

export interface CreateOrderInput {
  items: { product_id: number; quantity: number }[];
  shipping_address: unknown;
}

export async function createOrder(token: string, input: CreateOrderInput): Promise<Order> {
  return unwrapOrder((await request<unknown>('/orders', { method: 'POST', body: input, token })).data);
}

export async function listOrders(token: string, signal?: AbortSignal): Promise<Order[]> {
  // Newest first; 100 is the most the service returns in one page.
  const { data } = await request<unknown>('/orders?limit=100', { token, signal });
  // The contract is a JSON array; tolerate an {orders: [...]} envelope as well.
  const arr = Array.isArray(data) ? data : (data as { orders?: unknown[] } | undefined)?.orders;
  return Array.isArray(arr) ? (arr as Order[]) : [];
}

export async function getOrder(token: string, id: string | number, signal?: AbortSignal): Promise<Order> {
  return unwrapOrder((await request<unknown>(`/orders/${encodeURIComponent(String(id))}`, { token, signal })).data);
}

export async function payOrder(token: string, id: string | number, card: Card): Promise<Order> {
  return unwrapOrder(
    (await request<unknown>(`/orders/${encodeURIComponent(String(id))}/pay`, { method: 'POST', body: { card }, token })).data,
  );
}

// The contract answers the order itself; accept {order: {...}} too, in case the service wraps it.
function unwrapOrder(data: unknown): Order {
  if (data && typeof data === 'object' && 'order' in data && (data as { order: unknown }).order) {
    return (data as { order: Order }).order;
  }
  return data as Order;
}
