import { useRef, useState, type FormEvent } from 'react';
import { login } from '../lib/api';
import { Link, navigate, useLocation } from '../lib/router';
import { useAuth } from '../state/auth';
import { PageHeading } from '../components/PageHeading';
import { Field } from '../components/Field';
import { ErrorAlert } from '../components/ErrorAlert';

/** Only same-site paths are followed after login (no open redirect). */
export function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function LoginPage() {
  const { search } = useLocation();
  const next = safeNext(search.get('next'));
  const { signIn } = useAuth();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [errors, setErrors] = useState<{ email?: string; password?: string }>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const emailRef = useRef<HTMLInputElement>(null);
  const passwordRef = useRef<HTMLInputElement>(null);

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    const errs: typeof errors = {};
    if (!email.trim()) errs.email = 'Enter your email address.';
    if (!password) errs.password = 'Enter your password.';
    setErrors(errs);
    if (errs.email) return emailRef.current?.focus();
    if (errs.password) return passwordRef.current?.focus();
    setBusy(true);
    setError(null);
    try {
      signIn(await login(email.trim(), password));
      navigate(next, { replace: true });
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <div className="narrow">
      <PageHeading title="Log in">Log in</PageHeading>
      {search.get('expired') && (
        <p className="notice" role="status">
          Your session has expired. Please log in again.
        </p>
      )}
      {error != null && <ErrorAlert error={error} context="login" />}
      <form onSubmit={onSubmit} noValidate className="stack">
        <Field
          ref={emailRef}
          label="Email"
          type="email"
          name="email"
          autoComplete="email"
          required
          value={email}
          error={errors.email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <Field
          ref={passwordRef}
          label="Password"
          type="password"
          name="password"
          autoComplete="current-password"
          required
          value={password}
          error={errors.password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
      <p>
        New here? <Link to={`/register${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`}>Create an account</Link>
      </p>
    </div>
  );
}
