import { describe, expect, it } from 'vitest';
import { ApiError, parseLinkRels, parseRetryAfter } from './api';
import { describeError } from './errors';
import { formatCardNumber, parseCard } from './cards';
import { formatCents, toCents } from './money';
import { parseOrderMessage, ordersSocketURL } from './ordersSocket';
import { matchPath } from './router';

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('7')).toBe(7);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('describeError', () => {
  const e = (status: number, message = 'x', extra: Partial<{ retryAfter: number; field: string }> = {}) =>
    new ApiError(message, { status, requestId: 'req-1', ...extra });

  it('says how long to wait on 429, from Retry-After', () => {
    expect(describeError(e(429, 'rate limited', { retryAfter: 12 })).message).toBe('Too many requests, try again in 12 s.');
    expect(describeError(e(429, 'rate limited', { retryAfter: 12 })).retryAfter).toBe(12);
    expect(describeError(e(429)).message).toMatch(/too many requests/i);
  });
  it('gives the decline reason on 402 and says the order stays pending', () => {
    const v = describeError(e(402, 'insufficient funds'), 'payment');
    expect(v.message).toBe('Payment declined: insufficient funds. Your order is saved as pending; try another card.');
  });
  it('says Stripe decline codes in words, from the body or the message', () => {
    const d = (message: string, body: Record<string, unknown> = {}) =>
      describeError(new ApiError(message, { status: 402, body }), 'payment').message;
    expect(d('card declined: insufficient_funds')).toMatch(/^Payment declined: insufficient funds\./);
    expect(d('payment declined', { decline_code: 'generic_decline' })).toMatch(/^Payment declined: the card was declined\./);
    expect(d('declined (expired_card)')).toMatch(/^Payment declined: the card has expired\./);
    expect(d('card declined')).toMatch(/^Payment declined: the card was declined\./);
    expect(d('something new_code_here')).toMatch(/^Payment declined: something new code here\./);
  });
  it('words 409 for the place it happened', () => {
    expect(describeError(e(409, 'email already registered'), 'register').message).toMatch(/account with this email already exists/);
    expect(describeError(e(409, 'insufficient stock'), 'order').message).toMatch(/Not enough stock .*insufficient stock/);
  });
  it('words 401 for login and for an expired session', () => {
    expect(describeError(e(401, 'Invalid credentials'), 'login').message).toBe('Invalid email or password.');
    expect(describeError(e(401, 'token expired')).message).toMatch(/session has expired/);
  });
  it('keeps the request id and field, and handles network failures and 5xx', () => {
    expect(describeError(e(400, 'email: must be an address', { field: 'email' }))).toMatchObject({
      message: 'Email: must be an address.',
      field: 'email',
      requestId: 'req-1',
    });
    expect(describeError(new ApiError('network error', { status: 0 })).message).toMatch(/Cannot reach the shop/);
    expect(describeError(e(503)).message).toMatch(/temporarily unavailable/);
    expect(describeError(new Error('boom')).message).toMatch(/Something went wrong/);
  });
});

describe('cards', () => {
  const now = new Date('2026-06-15T00:00:00Z');
  it('groups digits and sends digits only', () => {
    expect(formatCardNumber('4242424242424242')).toBe('4242 4242 4242 4242');
    const r = parseCard({ number: '4242 4242 4242 4242', expiry: '12/30', cvc: '123' }, now);
    expect(r.card).toEqual({ number: '4242424242424242', exp_month: 12, exp_year: 2030, cvc: '123' });
  });
  it('rejects an expired or malformed expiry and short numbers', () => {
    expect(parseCard({ number: '4242', expiry: '05/26', cvc: '1' }, now).errors).toEqual({
      number: expect.stringMatching(/12 to 19/),
      expiry: 'This card has expired.',
      cvc: expect.stringMatching(/3 or 4/),
    });
    expect(parseCard({ number: '4242424242424242', expiry: '13/30', cvc: '123' }, now).errors.expiry).toMatch(/month/);
    expect(parseCard({ number: '4242424242424242', expiry: '1230', cvc: '123' }, now).errors.expiry).toMatch(/MM\/YY/);
    expect(parseCard({ number: '4242424242424242', expiry: '06/2026', cvc: '1234' }, now).card?.exp_year).toBe(2026);
  });
});

describe('money', () => {
  it('sums in cents without float drift', () => {
    expect(toCents(1299.99) * 3).toBe(389997);
    expect(toCents(0.1) + toCents(0.2)).toBe(30);
    expect(formatCents(389997)).toBe('$3,899.97');
  });
});

describe('parseLinkRels', () => {
  it('finds the relations of a Link header', () => {
    const rels = parseLinkRels('</api/products?page=1>; rel="first", </api/products?page=3>; rel="next", </api/products?page=9>; rel="last"');
    expect([...rels].sort()).toEqual(['first', 'last', 'next']);
    expect(parseLinkRels(null).size).toBe(0);
  });
});

describe('parseOrderMessage', () => {
  it('reads the documented shape and tolerant variants', () => {
    expect(parseOrderMessage('{"type":"order_status","order_id":12,"status":"paid"}')).toEqual([
      { orderId: '12', status: 'paid', order: undefined },
    ]);
    expect(parseOrderMessage({ type: 'order.updated', order: { id: 'a1', status: 'shipped', total: 5 } })[0]).toMatchObject({
      orderId: 'a1',
      status: 'shipped',
      order: { total: 5 },
    });
    expect(parseOrderMessage({ orderId: 3, status: 'paid' })[0].orderId).toBe('3');
    expect(parseOrderMessage([{ order_id: 1, status: 'paid' }, { order_id: 2, status: 'cancelled' }])).toHaveLength(2);
    expect(parseOrderMessage({ id: 4, status: 'paid', items: [], total: 1 })[0].order).toMatchObject({ total: 1 });
  });
  it('ignores what is not a status change', () => {
    expect(parseOrderMessage('not json')).toEqual([]);
    expect(parseOrderMessage({ type: 'ping' })).toEqual([]);
    expect(parseOrderMessage({ type: 'hello', status: 'ok' })).toEqual([]);
    expect(parseOrderMessage({ order_id: 1 })).toEqual([]);
    expect(parseOrderMessage(null)).toEqual([]);
  });
  it('builds the socket URL on the same origin with the token', () => {
    expect(ordersSocketURL('a.b c', { protocol: 'https:', host: 'shop.example' })).toBe('wss://shop.example/api/ws/orders?token=a.b%20c');
    expect(ordersSocketURL('t', { protocol: 'http:', host: 'localhost:8080' })).toBe('ws://localhost:8080/api/ws/orders?token=t');
    expect(ordersSocketURL(undefined, { protocol: 'http:', host: 'localhost:8080' })).toBe('ws://localhost:8080/api/ws/orders');
  });
});

describe('matchPath', () => {
  it('matches parameters', () => {
    expect(matchPath('/products/:id', '/products/12')).toEqual({ id: '12' });
    expect(matchPath('/products/:id', '/products/12/x')).toBeNull();
    expect(matchPath('/orders', '/orders/')).toEqual({});
  });
});
