import { Link } from '../lib/router';
import { PageHeading } from '../components/PageHeading';

export function NotFoundPage({ what = 'page' }: { what?: string }) {
  const title = what === 'page' ? 'Page not found' : `${what[0].toUpperCase()}${what.slice(1)} not found`;
  return (
    <>
      <PageHeading title={title}>{title}</PageHeading>
      <p>
        We could not find that {what}. <Link to="/">Go to the catalog</Link>.
      </p>
    </>
  );
}
