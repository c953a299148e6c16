import type { RefObject } from 'react';
import { Field } from './Field';
import { TEST_CARDS, formatCardNumber, type CardErrors, type CardInput } from '../lib/cards';

interface Props {
  value: CardInput;
  errors: CardErrors;
  onChange: (v: CardInput) => void;
  refs: Record<keyof CardInput, RefObject<HTMLInputElement | null>>;
}

/** Card number, expiry and CVC, with the simulator's test cards one click (or Enter) away. */
export function CardFields({ value, errors, onChange, refs }: Props) {
  return (
    <fieldset className="card-fields">
      <legend>Payment card</legend>
      <div className="test-cards">
        <p id="test-cards-intro">
          Payments are simulated. Use one of these test cards, with any future expiry date and any CVC:
        </p>
        <ul aria-labelledby="test-cards-intro">
          {TEST_CARDS.map((c) => (
            <li key={c.number}>
              <code>{c.number}</code> <span className="outcome">{c.outcome}</span>{' '}
              <button
                type="button"
                className="small"
                aria-label={`Use test card ${c.number} (${c.outcome})`}
                onClick={() => {
                  onChange({ ...value, number: c.number, expiry: value.expiry || defaultExpiry(), cvc: value.cvc || '123' });
                  refs.number.current?.focus();
                }}
              >
                Use
              </button>
            </li>
          ))}
        </ul>
      </div>
      <Field
        ref={refs.number}
        label="Card number"
        name="cc-number"
        autoComplete="cc-number"
        inputMode="numeric"
        required
        value={value.number}
        error={errors.number}
        onChange={(e) => onChange({ ...value, number: formatCardNumber(e.target.value) })}
      />
      <div className="row">
        <Field
          ref={refs.expiry}
          label="Expiry date"
          hint="MM/YY"
          name="cc-exp"
          autoComplete="cc-exp"
          inputMode="numeric"
          required
          maxLength={7}
          value={value.expiry}
          error={errors.expiry}
          onChange={(e) => onChange({ ...value, expiry: e.target.value })}
        />
        <Field
          ref={refs.cvc}
          label="Security code (CVC)"
          hint="3 or 4 digits"
          name="cc-csc"
          autoComplete="cc-csc"
          inputMode="numeric"
          required
          maxLength={4}
          value={value.cvc}
          error={errors.cvc}
          onChange={(e) => onChange({ ...value, cvc: e.target.value })}
        />
      </div>
    </fieldset>
  );
}

function defaultExpiry(now = new Date()): string {
  return `12/${String((now.getFullYear() + 3) % 100).padStart(2, '0')}`;
}
