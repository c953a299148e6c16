import { useRef, useState, type FormEvent } from 'react';
import { ApiError, getOrder, getProduct, payOrder } from '../lib/api';
import { cardFieldFor, parseCard, type CardErrors, type CardInput } from '../lib/cards';
import { describeError } from '../lib/errors';
import { formatPrice } from '../lib/money';
import { Link, useLocation } from '../lib/router';
import type { Order, OrderItem } from '../lib/types';
import { useResource } from '../lib/useResource';
import { useExpireOn401 } from '../lib/useExpireOn401';
import { useOrderUpdates } from '../lib/useOrderUpdates';
import { useAuth } from '../state/auth';
import { PageHeading } from '../components/PageHeading';
import { StatusBadge } from '../components/StatusBadge';
import { ErrorAlert } from '../components/ErrorAlert';
import { LiveIndicator } from '../components/LiveIndicator';
import { CardFields } from '../components/CardFields';
import { NotFoundPage } from './NotFoundPage';
import { formatDate } from './OrdersPage';

export const STATUS_WORDS: Record<string, string> = {
  pending: 'pending payment',
  paid: 'paid',
  shipped: 'shipped',
  delivered: 'delivered',
  cancelled: 'cancelled',
  failed: 'failed',
};

export function formatShipping(a: unknown): string {
  if (a == null) return '';
  if (typeof a === 'string') return a;
  if (typeof a === 'object') return Object.values(a as Record<string, unknown>).filter((v) => v != null && v !== '').join(', ');
  return String(a);
}

export function OrderPage({ id }: { id: string }) {
  const { token } = useAuth();
  const { search } = useLocation();
  const order = useResource(token ? `order:${id}:${token}` : null, (signal) => getOrder(token!, id, signal));
  const [announcement, setAnnouncement] = useState('');

  const live = useOrderUpdates(
    token,
    (u) => {
      if (u.orderId !== id) return;
      order.set((prev) => (prev ? { ...prev, ...(u.order ?? {}), status: u.status } : prev));
      setAnnouncement(`Order #${id} is now ${STATUS_WORDS[u.status] ?? u.status}.`);
    },
    () => order.reload(),
  );

  if (useExpireOn401(order.error)) return null;
  if (order.error instanceof ApiError && (order.error.status === 404 || order.error.status === 400)) {
    return <NotFoundPage what="order" />;
  }
  const o = order.data;

  return (
    <>
      <p className="breadcrumb">
        <Link to="/orders">‹ My orders</Link>
      </p>
      <PageHeading title={`Order #${id}`}>Order #{id}</PageHeading>
      {search.get('placed') && o && (
        <p className="notice success" role="status">
          Thank you! Your order is placed.
        </p>
      )}
      <LiveIndicator state={live} />
      <p className="visually-hidden" role="status" aria-live="polite">
        {announcement}
      </p>
      {order.error != null && <ErrorAlert error={order.error} onRetry={order.reload} />}
      {o ? (
        <div className="order-detail">
          <dl className="facts">
            <div>
              <dt>Status</dt>
              <dd>
                <StatusBadge status={o.status} />
              </dd>
            </div>
            <div>
              <dt>Placed</dt>
              <dd>{formatDate(o.created_at)}</dd>
            </div>
            <div>
              <dt>Total</dt>
              <dd>{formatPrice(o.total)}</dd>
            </div>
            <div>
              <dt>Ship to</dt>
              <dd>{formatShipping(o.shipping_address)}</dd>
            </div>
          </dl>
          <h2>Items</h2>
          <ul className="order-items">
            {(o.items ?? []).map((it, i) => (
              <li key={`${it.product_id}-${i}`}>
                <span>
                  {it.quantity} × <ItemName item={it} />
                </span>
                {itemPrice(it) != null && <span>{formatPrice(itemPrice(it)! * it.quantity)}</span>}
              </li>
            ))}
          </ul>
          {o.status === 'pending' && token && <PayPending order={o} token={token} onPaid={(p) => order.set(() => p)} />}
        </div>
      ) : order.error == null ? (
        <p className="loading">Loading the order…</p>
      ) : null}
    </>
  );
}

function itemPrice(it: OrderItem): number | undefined {
  return it.unit_price ?? it.price;
}

function ItemName({ item }: { item: OrderItem }) {
  const given = item.name ?? item.product_name;
  const product = useResource(given ? null : `p:${item.product_id}`, (signal) => getProduct(item.product_id, signal));
  return <Link to={`/products/${item.product_id}`}>{given ?? product.data?.name ?? `Product #${item.product_id}`}</Link>;
}

/** Paying an order that is still pending (e.g. after a declined card). */
function PayPending({ order, token, onPaid }: { order: Order; token: string; onPaid: (o: Order) => void }) {
  const { expire } = useAuth();
  const { href } = useLocation();
  const [card, setCard] = useState<CardInput>({ number: '', expiry: '', cvc: '' });
  const [errors, setErrors] = useState<CardErrors>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const refs = { number: useRef<HTMLInputElement>(null), expiry: useRef<HTMLInputElement>(null), cvc: useRef<HTMLInputElement>(null) };

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const parsed = parseCard(card);
    setErrors(parsed.errors);
    const first = (['number', 'expiry', 'cvc'] as const).find((k) => parsed.errors[k]);
    if (first || !parsed.card) return refs[first ?? 'number'].current?.focus();
    setBusy(true);
    try {
      const paid = await payOrder(token, order.id, parsed.card);
      onPaid(paid && paid.status ? paid : { ...order, status: 'paid' });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return expire(href);
      setError(err);
      const cardField = err instanceof ApiError && err.status === 400 ? cardFieldFor(err.field) : undefined;
      if (cardField) {
        setErrors({ [cardField]: describeError(err).message });
        refs[cardField].current?.focus();
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="pay-pending" aria-labelledby="pay-heading">
      <h2 id="pay-heading">Pay for this order</h2>
      {error != null && <ErrorAlert error={error} context="payment" />}
      <form onSubmit={onSubmit} noValidate className="stack">
        <CardFields value={card} errors={errors} onChange={setCard} refs={refs} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Processing payment…' : `Pay ${formatPrice(order.total)}`}
        </button>
      </form>
    </section>
  );
}
