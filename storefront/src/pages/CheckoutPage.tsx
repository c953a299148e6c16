import { useRef, useState, type FormEvent } from 'react';
import { ApiError, createOrder, payOrder } from '../lib/api';
import { cardFieldFor, parseCard, type CardErrors, type CardInput } from '../lib/cards';
import { describeError } from '../lib/errors';
import { formatCents, formatPrice, toCents } from '../lib/money';
import { Link, navigate } from '../lib/router';
import type { Order } from '../lib/types';
import { useAuth } from '../state/auth';
import { useCart, type CartLine } from '../state/cart';
import { PageHeading } from '../components/PageHeading';
import { Field } from '../components/Field';
import { CardFields } from '../components/CardFields';
import { ErrorAlert } from '../components/ErrorAlert';

export interface Address {
  fullName: string;
  street: string;
  postalCode: string;
  city: string;
  country: string;
}
type AddressErrors = Partial<Record<keyof Address, string>>;
const ADDRESS_ORDER: (keyof Address)[] = ['fullName', 'street', 'postalCode', 'city', 'country'];

/** The shipping address as the orders service stores it: one line of text. */
export function formatAddress(a: Address): string {
  return [a.fullName, a.street, `${a.postalCode} ${a.city}`.trim(), a.country].map((s) => s.trim()).filter(Boolean).join(', ');
}

export function validateAddress(a: Address): AddressErrors {
  const e: AddressErrors = {};
  if (!a.fullName.trim()) e.fullName = 'Enter the name of the recipient.';
  if (!a.street.trim()) e.street = 'Enter the street and number.';
  if (!a.postalCode.trim()) e.postalCode = 'Enter the postal code.';
  if (!a.city.trim()) e.city = 'Enter the city.';
  if (!a.country.trim()) e.country = 'Enter the country.';
  return e;
}

// An order created here and not yet paid survives a reload of this page, so retrying a declined
// card pays the same order instead of creating (and reserving stock for) another.
const PENDING_KEY = 'archway.checkout';

function cartSignature(lines: CartLine[]): string {
  return lines.map((l) => `${l.productId}x${l.quantity}`).join(',');
}

function loadPending(sig: string): Order | null {
  try {
    const raw = sessionStorage.getItem(PENDING_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as { sig: string; order: Order };
    return s.sig === sig ? s.order : null;
  } catch {
    return null;
  }
}

function savePending(sig: string, order: Order | null) {
  try {
    if (order) sessionStorage.setItem(PENDING_KEY, JSON.stringify({ sig, order }));
    else sessionStorage.removeItem(PENDING_KEY);
  } catch {
    /* ignore */
  }
}

export function CheckoutPage() {
  const { token, user, expire } = useAuth();
  const cart = useCart();
  const sig = cartSignature(cart.lines);
  const [pending, setPending] = useState<Order | null>(() => loadPending(sig));
  const [address, setAddress] = useState<Address>({
    fullName: user ? `${user.firstName} ${user.lastName}`.trim() : '',
    street: '',
    postalCode: '',
    city: '',
    country: '',
  });
  const [addressErrors, setAddressErrors] = useState<AddressErrors>({});
  const [card, setCard] = useState<CardInput>({ number: '', expiry: '', cvc: '' });
  const [cardErrors, setCardErrors] = useState<CardErrors>({});
  const [error, setError] = useState<{ err: unknown; context: 'order' | 'payment' } | null>(null);
  const [busy, setBusy] = useState<null | 'order' | 'payment'>(null);
  const addrRefs = {
    fullName: useRef<HTMLInputElement>(null),
    street: useRef<HTMLInputElement>(null),
    postalCode: useRef<HTMLInputElement>(null),
    city: useRef<HTMLInputElement>(null),
    country: useRef<HTMLInputElement>(null),
  };
  const cardRefs = {
    number: useRef<HTMLInputElement>(null),
    expiry: useRef<HTMLInputElement>(null),
    cvc: useRef<HTMLInputElement>(null),
  };
  const alertRef = useRef<HTMLDivElement>(null);

  if (cart.lines.length === 0 && !pending) {
    return (
      <>
        <PageHeading title="Checkout">Checkout</PageHeading>
        <p className="empty">
          Your cart is empty. <Link to="/">Browse the catalog</Link>.
        </p>
      </>
    );
  }

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    if (busy || !token) return;
    setError(null);
    const aErr = pending ? {} : validateAddress(address);
    const parsed = parseCard(card);
    setAddressErrors(aErr);
    setCardErrors(parsed.errors);
    const firstAddr = ADDRESS_ORDER.find((k) => aErr[k]);
    if (firstAddr) return addrRefs[firstAddr].current?.focus();
    const firstCard = (['number', 'expiry', 'cvc'] as const).find((k) => parsed.errors[k]);
    if (firstCard || !parsed.card) return cardRefs[firstCard ?? 'number'].current?.focus();

    let order = pending;
    if (!order) {
      setBusy('order');
      try {
        order = await createOrder(token, {
          items: cart.lines.map((l) => ({ product_id: l.productId, quantity: l.quantity })),
          shipping_address: formatAddress(address),
        });
        setPending(order);
        savePending(sig, order);
      } catch (err) {
        return fail(err, 'order');
      }
    }
    setBusy('payment');
    try {
      const paid = await payOrder(token, order.id, parsed.card);
      savePending(sig, null);
      cart.clear();
      navigate(`/orders/${encodeURIComponent(String(paid?.id ?? order.id))}?placed=1`);
    } catch (err) {
      fail(err, 'payment');
    }
  }

  function fail(err: unknown, context: 'order' | 'payment') {
    setBusy(null);
    if (err instanceof ApiError && err.status === 401) {
      expire('/checkout');
      return;
    }
    setError({ err, context });
    const cardField = err instanceof ApiError && err.status === 400 ? cardFieldFor(err.field) : undefined;
    if (context === 'payment' && cardField) {
      setCardErrors({ [cardField]: describeError(err).message });
      cardRefs[cardField].current?.focus();
      return;
    }
    requestAnimationFrame(() => alertRef.current?.scrollIntoView?.({ block: 'nearest' }));
  }

  const bindAddr = (name: keyof Address) => ({
    ref: addrRefs[name],
    name,
    value: address[name],
    error: addressErrors[name],
    required: true,
    disabled: pending != null,
    onChange: (e: React.ChangeEvent<HTMLInputElement>) => setAddress((a) => ({ ...a, [name]: e.target.value })),
  });

  const totalCents = pending ? toCents(pending.total) : cart.totalCents;

  return (
    <>
      <PageHeading title="Checkout">Checkout</PageHeading>
      <div className="checkout-layout">
        <form className="stack checkout-form" onSubmit={onSubmit} noValidate aria-describedby={pending ? 'checkout-note' : undefined}>
          <div ref={alertRef}>
            {error && (
              <ErrorAlert error={error.err} context={error.context}>
                {error.err instanceof ApiError && (error.err.status === 409 || error.err.status === 404) && (
                  <p>
                    <Link to="/cart">Review your cart</Link>
                  </p>
                )}
              </ErrorAlert>
            )}
          </div>
          {pending && (
            <p className="notice" id="checkout-note">
              Order #{String(pending.id)} is saved and waiting for payment. The shipping address can no longer change.
            </p>
          )}
          <fieldset>
            <legend>Shipping address</legend>
            <Field label="Full name" autoComplete="shipping name" maxLength={100} {...bindAddr('fullName')} />
            <Field label="Street and number" autoComplete="shipping street-address" maxLength={200} {...bindAddr('street')} />
            <div className="row">
              <Field label="Postal code" autoComplete="shipping postal-code" maxLength={20} {...bindAddr('postalCode')} />
              <Field label="City" autoComplete="shipping address-level2" maxLength={100} {...bindAddr('city')} />
            </div>
            <Field label="Country" autoComplete="shipping country-name" maxLength={100} {...bindAddr('country')} />
          </fieldset>
          <CardFields value={card} errors={cardErrors} onChange={setCard} refs={cardRefs} />
          <button type="submit" className="primary wide" disabled={busy != null}>
            {busy === 'order'
              ? 'Placing order…'
              : busy === 'payment'
                ? 'Processing payment…'
                : `${pending ? 'Pay' : 'Place order and pay'} ${formatCents(totalCents)}`}
          </button>
        </form>
        <aside className="order-summary" aria-labelledby="summary-heading">
          <h2 id="summary-heading">Order summary</h2>
          <ul>
            {cart.lines.map((l) => (
              <li key={l.productId}>
                <span>
                  {l.quantity} × {l.name}
                </span>
                <span>{formatPrice((toCents(l.price) * l.quantity) / 100)}</span>
              </li>
            ))}
          </ul>
          <p className="total">
            Total <strong>{formatCents(totalCents)}</strong>
          </p>
        </aside>
      </div>
    </>
  );
}
