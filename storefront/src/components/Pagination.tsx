import { Link } from '../lib/router';

interface Props {
  page: number;
  totalPages: number | null;
  hasNext: boolean;
  hrefFor: (page: number) => string;
}

export function Pagination({ page, totalPages, hasNext, hrefFor }: Props) {
  const last = totalPages ?? (hasNext ? page + 1 : page);
  if (last <= 1 && page <= 1) return null;
  const pages: number[] = [];
  for (let p = Math.max(1, page - 2); p <= Math.min(last, page + 2); p++) pages.push(p);
  return (
    <nav className="pagination" aria-label="Pagination">
      <ul>
        <li>
          {page > 1 ? (
            <Link to={hrefFor(page - 1)} rel="prev">
              <span aria-hidden="true">‹ </span>Previous
            </Link>
          ) : (
            <span className="disabled" aria-disabled="true">
              <span aria-hidden="true">‹ </span>Previous
            </span>
          )}
        </li>
        {pages.map((p) => (
          <li key={p}>
            <Link to={hrefFor(p)} aria-current={p === page ? 'page' : undefined} aria-label={`Page ${p}`}>
              {p}
            </Link>
          </li>
        ))}
        <li>
          {hasNext ? (
            <Link to={hrefFor(page + 1)} rel="next">
              Next<span aria-hidden="true"> ›</span>
            </Link>
          ) : (
            <span className="disabled" aria-disabled="true">
              Next<span aria-hidden="true"> ›</span>
            </span>
          )}
        </li>
      </ul>
    </nav>
  );
}
