import { useEffect, useId, useState } from 'react';
import { Link } from '../lib/router';
import { formatCents, formatPrice, toCents } from '../lib/money';
import { maxFor, useCart, type CartLine } from '../state/cart';
import { PageHeading } from '../components/PageHeading';

export function CartPage() {
  const cart = useCart();
  return (
    <>
      <PageHeading title="Your cart">Your cart</PageHeading>
      {cart.lines.length === 0 ? (
        <p className="empty">
          Your cart is empty. <Link to="/">Browse the catalog</Link>.
        </p>
      ) : (
        <>
          <ul className="cart-lines" aria-label="Items in your cart">
            {cart.lines.map((l) => (
              <CartRow key={l.productId} line={l} />
            ))}
          </ul>
          <div className="cart-summary">
            <p className="total">
              Total <strong>{formatCents(cart.totalCents)}</strong>
            </p>
            <Link to="/checkout" className="button primary">
              Go to checkout
            </Link>
          </div>
        </>
      )}
    </>
  );
}

function CartRow({ line }: { line: CartLine }) {
  const cart = useCart();
  const id = useId();
  const max = Math.max(1, maxFor(line));
  // The field holds what is typed (it may be empty for a moment); the cart takes valid numbers.
  const [draft, setDraft] = useState(String(line.quantity));
  useEffect(() => setDraft(String(line.quantity)), [line.quantity]);
  return (
    <li className="cart-line">
      <div className="cart-line-name">
        <Link to={`/products/${line.productId}`}>{line.name}</Link>
        <span className="unit">{formatPrice(line.price)} each</span>
      </div>
      <div className="field qty">
        <label htmlFor={id}>
          Quantity<span className="visually-hidden"> of {line.name}</span>
        </label>
        <input
          id={id}
          type="number"
          inputMode="numeric"
          min={1}
          max={max}
          value={draft}
          onChange={(e) => {
            setDraft(e.target.value);
            const q = parseInt(e.target.value, 10);
            if (Number.isFinite(q) && q > 0) cart.setQuantity(line.productId, q);
          }}
          onBlur={() => setDraft(String(line.quantity))}
        />
      </div>
      <p className="line-total">{formatCents(toCents(line.price) * line.quantity)}</p>
      <button type="button" className="link-button" aria-label={`Remove ${line.name}`} onClick={() => cart.remove(line.productId)}>
        Remove
      </button>
    </li>
  );
}
