const fmt = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });

/** Prices arrive as decimal numbers (1299.99); sums are done in integer cents. */
export function toCents(price: number): number {
  return Math.round(price * 100);
}

export function formatCents(cents: number): string {
  return fmt.format(cents / 100);
}

export function formatPrice(price: number): string {
  return formatCents(toCents(price));
}
