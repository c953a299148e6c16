import type { Order } from './types';

/** One status change pushed by the orders service. */
export interface OrderUpdate {
  orderId: string;
  status: string;
  /** The whole order, when the message carried it. */
  order?: Partial<Order>;
}

export type SocketState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * Reads the status updates out of one WebSocket message. The documented shape is
 * {"type":"order_status","order_id":..,"status":..}; also accepted are {order: {...}},
 * camelCase orderId, a bare order object and an array of any of these. Anything else is ignored.
 */
export function parseOrderMessage(data: unknown): OrderUpdate[] {
  let msg: unknown = data;
  if (typeof data === 'string') {
    try {
      msg = JSON.parse(data);
    } catch {
      return [];
    }
  }
  if (Array.isArray(msg)) return msg.flatMap((m) => parseOrderMessage(m));
  if (!msg || typeof msg !== 'object') return [];
  const m = msg as Record<string, unknown>;
  if (typeof m.type === 'string' && !/order|status/i.test(m.type)) return [];
  const nested = m.order && typeof m.order === 'object' ? (m.order as Record<string, unknown>) : undefined;
  const data2 = m.data && typeof m.data === 'object' ? (m.data as Record<string, unknown>) : undefined;
  const src = nested ?? data2 ?? m;
  const id = m.order_id ?? m.orderId ?? src.order_id ?? src.id;
  const status = m.status ?? src.status ?? m.new_status;
  if ((typeof id !== 'string' && typeof id !== 'number') || typeof status !== 'string') return [];
  const order = (nested ?? data2 ?? ('items' in m ? m : undefined)) as Partial<Order> | undefined;
  return [{ orderId: String(id), status, order }];
}

/** The socket's URL on the page's origin; with a token, the token rides in the query. */
export function ordersSocketURL(token?: string, loc: { protocol: string; host: string } = window.location): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  const base = `${scheme}//${loc.host}/api/ws/orders`;
  return token ? `${base}?token=${encodeURIComponent(token)}` : base;
}

/** The subprotocol the orders service accepts next to the token: new WebSocket(url, [it, token]). */
export const BEARER_PROTOCOL = 'archway.bearer';

/** Closed by the server because the token expired (or was refused mid-connection). */
const CLOSE_POLICY_VIOLATION = 1008;

interface Handlers {
  onUpdate: (u: OrderUpdate) => void;
  /** The server closed for an expired token: the shopper must log in again. */
  onUnauthorized?: () => void;
  onState?: (s: SocketState) => void;
  /** Called after a reconnect: updates may have been missed meanwhile, so reload. */
  onResync?: () => void;
}

/**
 * Keeps one WebSocket to /api/ws/orders open, reconnecting with capped exponential backoff.
 * The token travels as a subprotocol (["archway.bearer", token]) so it stays out of URLs and
 * access logs; if two handshakes in a row fail before any succeeded, it falls back to ?token=
 * (some proxies drop the subprotocol header). Owned by one component; stop() ends it for good.
 */
export class OrdersSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private everOpened = false;
  private useQuery = false;
  private readonly token: string;
  private readonly handlers: Handlers;
  private readonly loc?: { protocol: string; host: string };

  constructor(token: string, handlers: Handlers, loc?: { protocol: string; host: string }) {
    this.token = token;
    this.handlers = handlers;
    this.loc = loc;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    this.handlers.onState?.('closed');
  }

  private connect() {
    this.handlers.onState?.(this.everOpened || this.attempt > 0 ? 'reconnecting' : 'connecting');
    let ws: WebSocket;
    try {
      ws = this.useQuery
        ? new WebSocket(ordersSocketURL(this.token, this.loc))
        : new WebSocket(ordersSocketURL(undefined, this.loc), [BEARER_PROTOCOL, this.token]);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const wasReconnect = this.everOpened || this.attempt > 0;
      this.attempt = 0;
      this.everOpened = true;
      this.handlers.onState?.('open');
      if (wasReconnect) this.handlers.onResync?.();
    };
    ws.onmessage = (ev: MessageEvent) => {
      for (const u of parseOrderMessage(ev.data)) this.handlers.onUpdate(u);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev?.code === CLOSE_POLICY_VIOLATION) {
        this.stop();
        this.handlers.onUnauthorized?.();
        return;
      }
      if (!this.everOpened && !this.useQuery && this.attempt >= 1) this.useQuery = true;
      this.scheduleReconnect();
    };
    ws.onerror = () => {
      /* onclose follows and reconnects */
    };
  }

  private scheduleReconnect() {
    if (this.stopped) return;
    this.handlers.onState?.('reconnecting');
    const delay = Math.min(30_000, 1000 * 2 ** this.attempt);
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.connect();
    }, delay);
  }
}
