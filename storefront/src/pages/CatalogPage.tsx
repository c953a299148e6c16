import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { listCategories, listProducts } from '../lib/api';
import { navigate, useLocation } from '../lib/router';
import { useResource } from '../lib/useResource';
import { PageHeading } from '../components/PageHeading';
import { ProductCard, ProductCardSkeleton } from '../components/ProductCard';
import { Pagination } from '../components/Pagination';
import { ErrorAlert } from '../components/ErrorAlert';

export const PAGE_SIZE = 8;

function catalogHref(category: string, search: string, page: number): string {
  const p = new URLSearchParams();
  if (category) p.set('category', category);
  if (search) p.set('search', search);
  if (page > 1) p.set('page', String(page));
  const qs = p.toString();
  return qs ? `/?${qs}` : '/';
}

export function CatalogPage() {
  const { search: params } = useLocation();
  const category = params.get('category') ?? '';
  const search = params.get('search') ?? '';
  const pageParam = parseInt(params.get('page') ?? '1', 10);
  const page = Number.isFinite(pageParam) && pageParam > 0 ? pageParam : 1;

  const [query, setQuery] = useState(search);
  useEffect(() => setQuery(search), [search]);

  // Turning a page replaces the list (and maybe the link just used): start reading at the heading.
  const firstPage = useRef(true);
  useEffect(() => {
    if (firstPage.current) {
      firstPage.current = false;
      return;
    }
    document.querySelector<HTMLElement>('main h1')?.focus();
  }, [page]);
  const searchId = useId();
  const categoryId = useId();

  const categories = useResource('categories', (signal) => listCategories(signal));
  const key = JSON.stringify({ category, search, page });
  const products = useResource(key, (signal) => listProducts({ category, search, page, limit: PAGE_SIZE }, signal));

  // The count describes the results on screen, which lag the URL while the next page loads.
  const shown = products.dataKey ? (JSON.parse(products.dataKey) as { category: string; search: string; page: number }) : null;
  const totalPages = products.data?.total != null ? Math.max(1, Math.ceil(products.data.total / PAGE_SIZE)) : null;

  function onSearch(e: FormEvent) {
    e.preventDefault();
    navigate(catalogHref(category, query.trim(), 1));
  }

  const heading = category ? category : 'All products';
  const list = products.data?.products;
  const total = products.data?.total;
  const countText =
    products.error != null
      ? ''
      : products.data == null || shown == null
        ? 'Loading products…'
        : total != null
          ? `${total} ${total === 1 ? 'product' : 'products'}${shown.search ? ` matching “${shown.search}”` : ''}${
              totalPages && totalPages > 1 ? `, page ${shown.page} of ${totalPages}` : ''
            }`
          : `${list?.length ?? 0} products`;

  return (
    <>
      <PageHeading title={search ? `Search: ${search}` : heading}>{heading}</PageHeading>
      <div className="filters">
        <form role="search" onSubmit={onSearch} className="search-form">
          <label htmlFor={searchId}>Search products</label>
          <div className="inline">
            <input
              id={searchId}
              type="search"
              name="search"
              value={query}
              maxLength={100}
              onChange={(e) => setQuery(e.target.value)}
              placeholder="e.g. gaming"
            />
            <button type="submit">Search</button>
          </div>
        </form>
        <div className="category-filter">
          <label htmlFor={categoryId}>Category</label>
          <select id={categoryId} value={category} onChange={(e) => navigate(catalogHref(e.target.value, search, 1))}>
            <option value="">All categories</option>
            {(categories.data ?? (category ? [category] : [])).map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </div>
      </div>

      <p className="result-count" role="status" aria-live="polite">
        {countText}
      </p>

      {products.error != null && (
        <ErrorAlert
          error={products.error}
          onRetry={() => {
            products.reload();
            if (categories.error != null) categories.reload();
          }}
        />
      )}

      <div className="catalog" aria-busy={products.loading}>
        {list == null && products.error == null ? (
          <ul className="grid" aria-label="Loading products">
            {Array.from({ length: PAGE_SIZE }, (_, i) => (
              <ProductCardSkeleton key={i} />
            ))}
          </ul>
        ) : list && list.length > 0 ? (
          <ul className="grid" aria-label="Products">
            {list.map((p) => (
              <ProductCard key={p.id} product={p} />
            ))}
          </ul>
        ) : list ? (
          <p className="empty">
            No products found.{' '}
            {(search || category) && (
              <a
                href="/"
                onClick={(e) => {
                  e.preventDefault();
                  navigate('/');
                }}
              >
                Show all products
              </a>
            )}
          </p>
        ) : null}
      </div>

      {products.data && shown && (
        <Pagination
          page={shown.page}
          totalPages={totalPages}
          hasNext={products.data.hasNext}
          hrefFor={(p) => catalogHref(shown.category, shown.search, p)}
        />
      )}
    </>
  );
}
