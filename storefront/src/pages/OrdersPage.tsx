import { useState } from 'react';
import { listOrders } from '../lib/api';
import { useExpireOn401 } from '../lib/useExpireOn401';
import { formatPrice } from '../lib/money';
import { Link } from '../lib/router';
import type { Order } from '../lib/types';
import { useResource } from '../lib/useResource';
import { useOrderUpdates } from '../lib/useOrderUpdates';
import { useAuth } from '../state/auth';
import { PageHeading } from '../components/PageHeading';
import { StatusBadge } from '../components/StatusBadge';
import { ErrorAlert } from '../components/ErrorAlert';
import { LiveIndicator } from '../components/LiveIndicator';
import { STATUS_WORDS } from './OrderPage';

export function formatDate(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

export function itemCount(o: Order): number {
  return Array.isArray(o.items) ? o.items.reduce((n, i) => n + (i.quantity ?? 0), 0) : 0;
}

export function OrdersPage() {
  const { token } = useAuth();
  const orders = useResource(token ? `orders:${token}` : null, (signal) => listOrders(token!, signal));
  const [announcement, setAnnouncement] = useState('');

  const live = useOrderUpdates(
    token,
    (u) => {
      const known = orders.data?.some((o) => String(o.id) === u.orderId);
      if (!known) {
        orders.reload(); // a new order, or one this page has not seen yet
        return;
      }
      orders.set((prev) => prev?.map((o) => (String(o.id) === u.orderId ? { ...o, ...(u.order ?? {}), status: u.status } : o)));
      setAnnouncement(`Order #${u.orderId} is now ${STATUS_WORDS[u.status] ?? u.status}.`);
    },
    () => orders.reload(),
  );

  if (useExpireOn401(orders.error)) return null;

  return (
    <>
      <PageHeading title="My orders">My orders</PageHeading>
      <LiveIndicator state={live} />
      <p className="visually-hidden" role="status" aria-live="polite">
        {announcement}
      </p>
      {orders.error != null && <ErrorAlert error={orders.error} onRetry={orders.reload} />}
      {orders.data == null && orders.error == null ? (
        <p className="loading">Loading your orders…</p>
      ) : orders.data && orders.data.length === 0 ? (
        <p className="empty">
          You have no orders yet. <Link to="/">Browse the catalog</Link>.
        </p>
      ) : orders.data ? (
        <table className="orders">
          <caption className="visually-hidden">Your orders, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Order</th>
              <th scope="col">Placed</th>
              <th scope="col">Items</th>
              <th scope="col">Total</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {orders.data.map((o) => (
              <tr key={String(o.id)} data-order-id={String(o.id)}>
                <th scope="row">
                  <Link to={`/orders/${encodeURIComponent(String(o.id))}`}>#{String(o.id)}</Link>
                </th>
                <td data-label="Placed">{formatDate(o.created_at)}</td>
                <td data-label="Items">{itemCount(o)}</td>
                <td data-label="Total">{formatPrice(o.total)}</td>
                <td data-label="Status">
                  <StatusBadge status={o.status} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </>
  );
}
