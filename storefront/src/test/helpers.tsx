import { act, render } from '@testing-library/react';
import { vi } from 'vitest';
import { App } from '../App';
import { AUTH_KEY } from '../state/auth';
import { CART_KEY, type CartLine } from '../state/cart';
import type { Order, Product, User } from '../lib/types';
import catalogJSON from './catalog.json';

export interface Call {
  method: string;
  path: string; // after /api, with the query
  body: unknown;
  headers: Record<string, string>;
}

type Reply = { status?: number; body?: unknown; headers?: Record<string, string> };
type Handler = (call: Call) => Reply | Promise<Reply>;

/**
 * Replaces fetch with a table of handlers keyed "METHOD /path" (path without the query; the
 * first matching key wins, ":id" segments match anything). Unmatched calls answer 404.
 */
export function mockApi(routes: Record<string, Handler | Reply>) {
  const calls: Call[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), 'http://shop.test');
    const path = url.pathname.replace(/^\/api/, '') + url.search;
    const method = (init?.method ?? 'GET').toUpperCase();
    const headers = (init?.headers ?? {}) as Record<string, string>;
    const call: Call = { method, path, body: init?.body ? JSON.parse(String(init.body)) : undefined, headers };
    calls.push(call);
    const bare = url.pathname.replace(/^\/api/, '');
    for (const [key, h] of Object.entries(routes)) {
      const [m, p] = key.split(' ');
      if (m !== method || !pathMatches(p, bare)) continue;
      const r = typeof h === 'function' ? await h(call) : h;
      return new Response(r.body === undefined ? '' : JSON.stringify(r.body), {
        status: r.status ?? 200,
        headers: { 'Content-Type': 'application/json', ...(r.headers ?? {}) },
      });
    }
    return new Response(JSON.stringify({ error: 'not found', request_id: 'test' }), { status: 404 });
  });
  vi.stubGlobal('fetch', fetchMock);
  return { calls, fetchMock };
}

function pathMatches(pattern: string, path: string): boolean {
  const a = pattern.split('/');
  const b = path.split('/');
  return a.length === b.length && a.every((s, i) => s.startsWith(':') || s === b[i]);
}

/** A WebSocket stand-in the test drives: open(), send a server message with push(). */
export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  url: string;
  readyState = 0;
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  onclose: ((e: CloseEvent) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  closed = false;
  protocols: string[];
  constructor(url: string, protocols?: string | string[]) {
    this.url = url;
    this.protocols = protocols == null ? [] : Array.isArray(protocols) ? protocols : [protocols];
    FakeWebSocket.instances.push(this);
  }
  open() {
    this.readyState = 1;
    act(() => this.onopen?.(new Event('open')));
  }
  push(data: unknown) {
    act(() => this.onmessage?.(new MessageEvent('message', { data: typeof data === 'string' ? data : JSON.stringify(data) })));
  }
  drop(code = 1006) {
    this.readyState = 3;
    act(() => this.onclose?.(new CloseEvent('close', { code })));
  }
  close() {
    this.closed = true;
    this.readyState = 3;
  }
  send() {}
  static install() {
    FakeWebSocket.instances = [];
    vi.stubGlobal('WebSocket', FakeWebSocket);
  }
  static last(): FakeWebSocket {
    const ws = FakeWebSocket.instances.at(-1);
    if (!ws) throw new Error('no WebSocket was opened');
    return ws;
  }
}

export const ana: User = { id: 7, email: 'ana@example.com', firstName: 'Ana', lastName: 'García', role: 'customer' };

/** A token whose payload has an exp an hour ahead (the signature is not checked client-side). */
export function fakeToken(expSeconds = Math.floor(Date.now() / 1000) + 3600): string {
  const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${b64({ alg: 'EdDSA' })}.${b64({ sub: '7', exp: expSeconds })}.sig`;
}

export function signedIn(token = fakeToken()) {
  localStorage.setItem(AUTH_KEY, JSON.stringify({ token, user: ana }));
  return token;
}

export function withCart(lines: CartLine[]) {
  localStorage.setItem(CART_KEY, JSON.stringify(lines));
}

export function renderAt(path: string) {
  window.history.replaceState(null, '', path);
  return render(<App />);
}

// The products service's seed catalog (backends/products/seed), shared with the browser UI check.
export const catalog: Product[] = catalogJSON;

/** The products service's list endpoint over `catalog`, with its filters and headers. */
export function productsHandler(products: Product[] = catalog): Handler {
  return (call) => {
    const q = new URL(call.path, 'http://x').searchParams;
    const category = q.get('category')?.toLowerCase();
    const search = q.get('search')?.toLowerCase();
    const page = parseInt(q.get('page') ?? '1', 10);
    const limit = parseInt(q.get('limit') ?? '20', 10);
    const hits = products.filter(
      (p) =>
        (!category || p.category.toLowerCase() === category) &&
        (!search || p.name.toLowerCase().includes(search) || p.description.toLowerCase().includes(search)),
    );
    const slice = hits.slice((page - 1) * limit, page * limit);
    const links = [`</api/products?page=1>; rel="first"`];
    if (page * limit < hits.length) links.push(`</api/products?page=${page + 1}>; rel="next"`);
    return { body: slice, headers: { 'X-Total-Count': String(hits.length), Link: links.join(', ') } };
  };
}

export function order(over: Partial<Order> = {}): Order {
  return {
    id: 101,
    user_id: 7,
    items: [{ product_id: 1, quantity: 1, price: 1299.99 }],
    total: 1299.99,
    status: 'pending',
    shipping_address: 'Ana García, Calle Mayor 1, 28013 Madrid, Spain',
    created_at: '2026-02-01T10:00:00Z',
    updated_at: '2026-02-01T10:00:00Z',
    ...over,
  };
}
