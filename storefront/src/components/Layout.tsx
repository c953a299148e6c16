import type { ReactNode } from 'react';
import { Link, navigate, useLocation } from '../lib/router';
import { useAuth } from '../state/auth';
import { useCart } from '../state/cart';

export function Layout({ children }: { children: ReactNode }) {
  const { user, signOut } = useAuth();
  const { count } = useCart();
  const { pathname } = useLocation();
  const current = (p: string) => (pathname === p ? 'page' : undefined);
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="site-header">
        <div className="container header-inner">
          <Link to="/" className="brand">
            <svg aria-hidden="true" width="24" height="24" viewBox="0 0 16 16" focusable="false">
              <path d="M2 15V7a6 6 0 0 1 12 0v8h-3V7a3 3 0 0 0-6 0v8z" fill="currentColor" />
            </svg>
            Archway Shop
          </Link>
          <nav aria-label="Main" className="main-nav">
            <ul>
              <li>
                <Link to="/" aria-current={current('/')}>
                  Catalog
                </Link>
              </li>
              <li>
                <Link to="/cart" aria-current={current('/cart')} aria-label={`Cart, ${count} ${count === 1 ? 'item' : 'items'}`}>
                  Cart <span className="count">({count})</span>
                </Link>
              </li>
              {user ? (
                <>
                  <li>
                    <Link to="/orders" aria-current={current('/orders')}>
                      My orders
                    </Link>
                  </li>
                  <li className="user">
                    <span className="greeting">Hi, {user.firstName}</span>
                    <button
                      type="button"
                      className="link-button"
                      onClick={() => {
                        signOut();
                        navigate('/');
                      }}
                    >
                      Log out
                    </button>
                  </li>
                </>
              ) : (
                <>
                  <li>
                    <Link to="/login" aria-current={current('/login')}>
                      Log in
                    </Link>
                  </li>
                  <li>
                    <Link to="/register" aria-current={current('/register')}>
                      Register
                    </Link>
                  </li>
                </>
              )}
            </ul>
          </nav>
        </div>
      </header>
      <main id="main" className="container" tabIndex={-1}>
        {children}
      </main>
      <footer className="site-footer">
        <div className="container">
          <p>Archway Shop · a demo store. Payments are simulated: no real card is charged.</p>
        </div>
      </footer>
    </>
  );
}
