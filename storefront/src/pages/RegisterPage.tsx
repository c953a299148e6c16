import { useRef, useState, type FormEvent } from 'react';
import { ApiError, register } from '../lib/api';
import { describeError } from '../lib/errors';
import { Link, navigate, useLocation } from '../lib/router';
import { useAuth } from '../state/auth';
import { PageHeading } from '../components/PageHeading';
import { Field } from '../components/Field';
import { ErrorAlert } from '../components/ErrorAlert';
import { safeNext } from './LoginPage';

type Name = 'firstName' | 'lastName' | 'email' | 'password';
const ORDER: Name[] = ['firstName', 'lastName', 'email', 'password'];

export function validateRegistration(v: Record<Name, string>): Partial<Record<Name, string>> {
  const e: Partial<Record<Name, string>> = {};
  if (!v.firstName.trim()) e.firstName = 'Enter your first name.';
  if (!v.lastName.trim()) e.lastName = 'Enter your last name.';
  if (!v.email.trim()) e.email = 'Enter your email address.';
  else if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v.email.trim())) e.email = 'Enter an email address like ana@example.com.';
  if (v.password.length < 8) e.password = 'Use at least 8 characters.';
  else if (new TextEncoder().encode(v.password).length > 72) e.password = 'Use at most 72 bytes.';
  return e;
}

export function RegisterPage() {
  const { search } = useLocation();
  const next = safeNext(search.get('next'));
  const { signIn } = useAuth();
  const [values, setValues] = useState<Record<Name, string>>({ firstName: '', lastName: '', email: '', password: '' });
  const [errors, setErrors] = useState<Partial<Record<Name, string>>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const refs = {
    firstName: useRef<HTMLInputElement>(null),
    lastName: useRef<HTMLInputElement>(null),
    email: useRef<HTMLInputElement>(null),
    password: useRef<HTMLInputElement>(null),
  };

  function showFieldErrors(errs: Partial<Record<Name, string>>) {
    setErrors(errs);
    const first = ORDER.find((n) => errs[n]);
    if (first) refs[first].current?.focus();
    return first != null;
  }

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    if (showFieldErrors(validateRegistration(values))) return;
    setBusy(true);
    try {
      signIn(
        await register({
          email: values.email.trim(),
          password: values.password,
          firstName: values.firstName.trim(),
          lastName: values.lastName.trim(),
        }),
      );
      navigate(next, { replace: true });
    } catch (err) {
      setBusy(false);
      // A 400 or 409 naming a field is shown at that field.
      if (err instanceof ApiError && (err.status === 400 || err.status === 409) && err.field && ORDER.includes(err.field as Name)) {
        showFieldErrors({ [err.field as Name]: describeError(err, 'register').message });
      }
      setError(err);
    }
  }

  const bind = (name: Name) => ({
    ref: refs[name],
    name,
    value: values[name],
    error: errors[name],
    required: true,
    onChange: (e: React.ChangeEvent<HTMLInputElement>) => setValues((v) => ({ ...v, [name]: e.target.value })),
  });

  return (
    <div className="narrow">
      <PageHeading title="Create an account">Create an account</PageHeading>
      {error != null && (
        <ErrorAlert error={error} context="register">
          {error instanceof ApiError && error.status === 409 && (
            <p>
              <Link to={`/login${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`}>Log in</Link>
            </p>
          )}
        </ErrorAlert>
      )}
      <form onSubmit={onSubmit} noValidate className="stack">
        <div className="row">
          <Field label="First name" autoComplete="given-name" maxLength={100} {...bind('firstName')} />
          <Field label="Last name" autoComplete="family-name" maxLength={100} {...bind('lastName')} />
        </div>
        <Field label="Email" type="email" autoComplete="email" {...bind('email')} />
        <Field label="Password" type="password" autoComplete="new-password" hint="At least 8 characters." {...bind('password')} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Creating account…' : 'Create account'}
        </button>
      </form>
      <p>
        Already have an account? <Link to={`/login${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`}>Log in</Link>
      </p>
    </div>
  );
}
