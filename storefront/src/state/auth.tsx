import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import type { AuthResponse, User } from '../lib/types';
import { navigate } from '../lib/router';
import { readJSON, writeJSON } from './storage';

export const AUTH_KEY = 'archway.auth';

interface Stored {
  token: string;
  user: User;
}

interface AuthValue {
  token: string | null;
  user: User | null;
  signIn: (r: AuthResponse) => void;
  signOut: () => void;
  /** The token was refused (401): forget it and send the shopper to log in, then back here. */
  expire: (returnTo: string) => void;
}

const AuthContext = createContext<AuthValue | null>(null);

/** The exp claim of a JWT, in ms; null when it cannot be read (the server decides then). */
export function tokenExpiry(token: string): number | null {
  try {
    const part = token.split('.')[1];
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

function load(): Stored | null {
  const s = readJSON<Stored>(AUTH_KEY);
  if (!s || typeof s.token !== 'string' || !s.user) return null;
  const exp = tokenExpiry(s.token);
  if (exp != null && exp <= Date.now()) {
    writeJSON(AUTH_KEY, null);
    return null;
  }
  return s;
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<Stored | null>(load);

  // Logging in or out in another tab applies here too.
  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === AUTH_KEY || e.key === null) setState(load());
    };
    window.addEventListener('storage', onStorage);
    return () => window.removeEventListener('storage', onStorage);
  }, []);

  const signIn = useCallback((r: AuthResponse) => {
    const s = { token: r.token, user: r.user };
    writeJSON(AUTH_KEY, s);
    setState(s);
  }, []);

  const signOut = useCallback(() => {
    writeJSON(AUTH_KEY, null);
    setState(null);
  }, []);

  const expire = useCallback((returnTo: string) => {
    writeJSON(AUTH_KEY, null);
    setState(null);
    navigate(`/login?expired=1&next=${encodeURIComponent(returnTo)}`, { replace: true });
  }, []);

  const value = useMemo<AuthValue>(
    () => ({ token: state?.token ?? null, user: state?.user ?? null, signIn, signOut, expire }),
    [state, signIn, signOut, expire],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const v = useContext(AuthContext);
  if (!v) throw new Error('useAuth outside AuthProvider');
  return v;
}
