import type { Product } from '../lib/types';

const HUES = [210, 160, 28, 280, 340, 190, 120, 45];

/** The API has no images: a fixed-ratio tile with the product's initials keeps the layout stable. */
export function ProductArt({ product, large }: { product: Pick<Product, 'id' | 'name'>; large?: boolean }) {
  const initials = product.name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0]!.toUpperCase())
    .join('');
  const hue = HUES[product.id % HUES.length];
  return (
    <div className={large ? 'art art-large' : 'art'} style={{ ['--hue' as string]: hue }} aria-hidden="true">
      <span>{initials}</span>
    </div>
  );
}
