import type { Card } from './types';

/** The payment simulator's test cards (Stripe's numbers). Any future expiry and any CVC work. */
export const TEST_CARDS = [
  { number: '4242 4242 4242 4242', outcome: 'Approved' },
  { number: '4000 0000 0000 0002', outcome: 'Declined' },
  { number: '4000 0000 0000 9995', outcome: 'Declined: insufficient funds' },
] as const;

export function digitsOnly(s: string): string {
  return s.replace(/\D/g, '');
}

/** Groups digits in fours as the user types. */
export function formatCardNumber(s: string): string {
  return digitsOnly(s).slice(0, 19).replace(/(\d{4})(?=\d)/g, '$1 ');
}

export interface CardInput {
  number: string;
  expiry: string; // MM/YY or MM/YYYY
  cvc: string;
}

export type CardErrors = Partial<Record<keyof CardInput, string>>;

/** Validates the card form; returns the card to send, or the errors per field. */
export function parseCard(input: CardInput, now = new Date()): { card?: Card; errors: CardErrors } {
  const errors: CardErrors = {};
  const number = digitsOnly(input.number);
  if (number.length === 0) errors.number = 'Enter the card number.';
  else if (number.length < 12 || number.length > 19) errors.number = 'A card number has 12 to 19 digits.';

  const m = input.expiry.trim().match(/^(\d{1,2})\s*\/\s*(\d{2}|\d{4})$/);
  let expMonth = 0;
  let expYear = 0;
  if (input.expiry.trim() === '') errors.expiry = 'Enter the expiry date as MM/YY.';
  else if (!m) errors.expiry = 'Write the expiry date as MM/YY, for example 12/30.';
  else {
    expMonth = parseInt(m[1], 10);
    expYear = parseInt(m[2], 10);
    if (expYear < 100) expYear += 2000;
    if (expMonth < 1 || expMonth > 12) errors.expiry = 'The month must be between 01 and 12.';
    else if (expYear < now.getFullYear() || (expYear === now.getFullYear() && expMonth < now.getMonth() + 1))
      errors.expiry = 'This card has expired.';
  }

  const cvc = digitsOnly(input.cvc);
  if (cvc.length === 0) errors.cvc = 'Enter the security code (CVC).';
  else if (cvc.length < 3 || cvc.length > 4) errors.cvc = 'The CVC has 3 or 4 digits.';

  if (Object.keys(errors).length > 0) return { errors };
  return { card: { number, exp_month: expMonth, exp_year: expYear, cvc }, errors };
}

/** Which card input a 400's `field` names ("card.number", "exp_year", "cvc"...), if any. */
export function cardFieldFor(field: string | undefined): keyof CardInput | undefined {
  if (!field) return undefined;
  if (/number/i.test(field)) return 'number';
  if (/exp/i.test(field)) return 'expiry';
  if (/cvc|cvv/i.test(field)) return 'cvc';
  return undefined;
}
