import { AuthProvider, useAuth } from './state/auth';
import { CartProvider } from './state/cart';
import { matchPath, Navigate, useLocation } from './lib/router';
import { Layout } from './components/Layout';
import { CatalogPage } from './pages/CatalogPage';
import { ProductPage } from './pages/ProductPage';
import { LoginPage } from './pages/LoginPage';
import { RegisterPage } from './pages/RegisterPage';
import { CartPage } from './pages/CartPage';
import { CheckoutPage } from './pages/CheckoutPage';
import { OrdersPage } from './pages/OrdersPage';
import { OrderPage } from './pages/OrderPage';
import { NotFoundPage } from './pages/NotFoundPage';

function RequireLogin({ children }: { children: React.ReactNode }) {
  const { token } = useAuth();
  const { href } = useLocation();
  if (!token) return <Navigate to={`/login?next=${encodeURIComponent(href)}`} />;
  return <>{children}</>;
}

function Routes() {
  const { pathname } = useLocation();
  let m: Record<string, string> | null;
  if (pathname === '/') return <CatalogPage />;
  if ((m = matchPath('/products/:id', pathname))) return <ProductPage key={m.id} id={m.id} />;
  if (pathname === '/login') return <LoginPage />;
  if (pathname === '/register') return <RegisterPage />;
  if (pathname === '/cart') return <CartPage />;
  if (pathname === '/checkout')
    return (
      <RequireLogin>
        <CheckoutPage />
      </RequireLogin>
    );
  if (pathname === '/orders')
    return (
      <RequireLogin>
        <OrdersPage />
      </RequireLogin>
    );
  if ((m = matchPath('/orders/:id', pathname)))
    return (
      <RequireLogin>
        <OrderPage key={m.id} id={m.id} />
      </RequireLogin>
    );
  return <NotFoundPage />;
}

export function App() {
  return (
    <AuthProvider>
      <CartProvider>
        <Layout>
          <Routes />
        </Layout>
      </CartProvider>
    </AuthProvider>
  );
}
