import { useId, useState, type FormEvent } from 'react';
import { ApiError, getProduct } from '../lib/api';
import { formatPrice } from '../lib/money';
import { Link } from '../lib/router';
import { useResource } from '../lib/useResource';
import { maxFor, useCart } from '../state/cart';
import { PageHeading } from '../components/PageHeading';
import { ProductArt } from '../components/ProductArt';
import { ErrorAlert } from '../components/ErrorAlert';
import { NotFoundPage } from './NotFoundPage';

export function ProductPage({ id }: { id: string }) {
  const product = useResource(id, (signal) => getProduct(id, signal));
  const cart = useCart();
  const [quantity, setQuantity] = useState('1');
  const [added, setAdded] = useState<string | null>(null);
  const qtyId = useId();

  if (product.error instanceof ApiError && (product.error.status === 404 || product.error.status === 400)) {
    return <NotFoundPage what="product" />;
  }
  const p = product.data;
  const inCart = p ? (cart.lines.find((l) => l.productId === p.id)?.quantity ?? 0) : 0;
  const max = p ? Math.max(0, maxFor(p) - inCart) : 0;

  function onAdd(e: FormEvent) {
    e.preventDefault();
    if (!p || max === 0) return;
    const q = Math.max(1, Math.min(max, parseInt(quantity, 10) || 1));
    cart.add(p, q);
    setAdded(`Added ${q} × ${p.name} to your cart.`);
    setQuantity('1');
  }

  return (
    <article className="product-page" aria-busy={product.loading}>
      <p className="breadcrumb">
        <Link to="/">‹ Back to catalog</Link>
      </p>
      {product.error != null && <ErrorAlert error={product.error} onRetry={product.reload} />}
      {p ? (
        <div className="product-layout">
          <ProductArt product={p} large />
          <div className="product-info">
            <PageHeading title={p.name}>{p.name}</PageHeading>
            <p className="product-category">
              <Link to={`/?category=${encodeURIComponent(p.category)}`}>{p.category}</Link>
            </p>
            <p className="product-price big">{formatPrice(p.price)}</p>
            <p className="description">{p.description}</p>
            <p className={p.inventory > 0 ? 'stock' : 'stock stock-out'}>
              {p.inventory > 0 ? `${p.inventory} in stock` : 'Out of stock'}
            </p>
            <form className="add-to-cart" onSubmit={onAdd}>
              <div className="field qty">
                <label htmlFor={qtyId}>Quantity</label>
                <input
                  id={qtyId}
                  type="number"
                  inputMode="numeric"
                  min={1}
                  max={Math.max(1, max)}
                  value={quantity}
                  disabled={max === 0}
                  onChange={(e) => setQuantity(e.target.value)}
                />
              </div>
              <button type="submit" className="primary" disabled={max === 0}>
                Add to cart
              </button>
            </form>
            {max === 0 && p.inventory > 0 && <p className="hint">You have all available units in your cart.</p>}
            <div className="status-slot" role="status" aria-live="polite">
              {added && (
                <p className="notice success">
                  {added} <Link to="/cart">View cart</Link>
                </p>
              )}
            </div>
          </div>
        </div>
      ) : product.error == null ? (
        <div className="product-layout skeleton" aria-hidden="true">
          <div className="art art-large" />
          <div className="product-info">
            <div className="line wide" />
            <div className="line" />
            <div className="line short" />
          </div>
        </div>
      ) : null}
    </article>
  );
}
