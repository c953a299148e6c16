import { ApiError } from './api';

/** What the user is doing when a call fails; it decides the wording. */
export type ErrorContext = 'load' | 'login' | 'register' | 'order' | 'payment';

export interface ErrorView {
  message: string;
  /** Seconds to wait (429 with Retry-After). */
  retryAfter?: number;
  /** The request id to quote to support, when the server sent one. */
  requestId?: string;
  /** The input the server blamed (400s), e.g. "email". */
  field?: string;
}

export function tooManyRequests(seconds: number | undefined): string {
  return seconds == null
    ? 'Too many requests, please wait a moment and try again.'
    : `Too many requests, try again in ${seconds} s.`;
}

/** Turns any thrown value into a message a shopper can act on. */
export function describeError(err: unknown, context: ErrorContext = 'load'): ErrorView {
  if (!(err instanceof ApiError)) {
    return { message: 'Something went wrong. Please try again.' };
  }
  const base = { requestId: err.requestId, field: err.field };
  switch (err.status) {
    case 0:
      return { message: 'Cannot reach the shop. Check your connection and try again.' };
    case 400:
      return { ...base, message: capitalise(err.message) };
    case 401:
      if (context === 'login') return { ...base, message: 'Invalid email or password.' };
      return { ...base, message: 'Your session has expired. Please log in again.' };
    case 402:
      return {
        ...base,
        message: `Payment declined: ${declineReason(err)}. Your order is saved as pending; try another card.`,
      };
    case 403:
      return { ...base, message: 'You are not allowed to do that.' };
    case 404:
      if (context === 'order') return { ...base, message: `A product in your cart no longer exists (${err.message}). Remove it and try again.` };
      return { ...base, message: 'Not found.' };
    case 409:
      if (context === 'register') return { ...base, message: 'An account with this email already exists. Log in instead.' };
      if (context === 'order')
        return { ...base, message: `Not enough stock for an item in your cart (${err.message}). Lower the quantity and try again.` };
      if (context === 'payment') return { ...base, message: capitalise(err.message) };
      return { ...base, message: `Conflict: ${err.message}.` };
    case 413:
      return { ...base, message: 'That request is too large.' };
    case 429:
      return { ...base, retryAfter: err.retryAfter, message: tooManyRequests(err.retryAfter) };
    case 502:
    case 503:
    case 504:
      return { ...base, retryAfter: err.retryAfter, message: 'The shop is temporarily unavailable. Please try again in a moment.' };
    default:
      if (err.status >= 500) return { ...base, message: 'The shop had a problem handling that. Please try again.' };
      return { ...base, message: capitalise(err.message) };
  }
}

// The payment simulator answers Stripe's decline codes; say them in words.
const DECLINE_CODES: Record<string, string> = {
  generic_decline: 'the card was declined',
  card_declined: 'the card was declined',
  insufficient_funds: 'insufficient funds',
  lost_card: 'the card was reported lost',
  stolen_card: 'the card was reported stolen',
  expired_card: 'the card has expired',
  incorrect_cvc: 'the security code is incorrect',
  processing_error: 'a processing error occurred',
  live_card_in_test_mode: 'only test cards work in this shop',
  do_not_honor: 'the card was declined',
};

/** The reason of a 402 in words: a decline code in the body, or the error text with codes replaced. */
export function declineReason(err: ApiError): string {
  const b = err.body;
  const code = [b.decline_code, b.decline_reason, b.reason, b.code].find((v) => typeof v === 'string') as string | undefined;
  if (code && DECLINE_CODES[code]) return DECLINE_CODES[code];
  const raw = (code ?? err.message ?? '').trim();
  const known = raw.match(/\b[a-z]+(?:_[a-z]+)+\b/g)?.find((c) => DECLINE_CODES[c]);
  if (known) return DECLINE_CODES[known];
  const text = raw
    .replace(/^(payment|card)( was)? declined\s*[:-]?\s*/i, '')
    .replace(/_/g, ' ')
    .replace(/\.$/, '')
    .trim();
  return text === '' ? 'the card was declined' : text;
}

function capitalise(s: string): string {
  const t = s.trim().replace(/\.$/, '');
  return t === '' ? 'Request failed.' : t[0].toUpperCase() + t.slice(1) + '.';
}
