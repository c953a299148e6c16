import type { Product } from '../lib/types';
import { Link } from '../lib/router';
import { formatPrice } from '../lib/money';
import { ProductArt } from './ProductArt';

export function ProductCard({ product }: { product: Product }) {
  return (
    <li className="card product-card">
      <ProductArt product={product} />
      <h2 className="product-name">
        <Link to={`/products/${product.id}`}>{product.name}</Link>
      </h2>
      <p className="product-category">{product.category}</p>
      <p className="product-price">{formatPrice(product.price)}</p>
      <p className={product.inventory > 0 ? 'stock' : 'stock stock-out'}>
        {product.inventory > 0 ? 'In stock' : 'Out of stock'}
      </p>
    </li>
  );
}

export function ProductCardSkeleton() {
  return (
    <li className="card product-card skeleton" aria-hidden="true">
      <div className="art" />
      <div className="line wide" />
      <div className="line" />
      <div className="line short" />
    </li>
  );
}
