import { useEffect, useRef, type ReactNode } from 'react';

let initialPage = true;

/**
 * The page's h1. It names the document and, after in-app navigation, takes focus so keyboard
 * and screen-reader users start reading the new page (the first page load leaves focus alone).
 */
export function PageHeading({ children, title }: { children: ReactNode; title: string }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · Archway Shop`;
  }, [title]);
  useEffect(() => {
    if (initialPage) {
      initialPage = false;
      return;
    }
    ref.current?.focus({ preventScroll: false });
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}
