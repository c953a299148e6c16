import { useEffect } from 'react';
import { ApiError } from './api';
import { useLocation } from './router';
import { useAuth } from '../state/auth';

/** A 401 on an authenticated load means the token is gone or expired: send the shopper to log in. */
export function useExpireOn401(error: unknown): boolean {
  const { expire } = useAuth();
  const { href } = useLocation();
  const unauthorized = error instanceof ApiError && error.status === 401;
  useEffect(() => {
    if (unauthorized) expire(href);
  }, [unauthorized, expire, href]);
  return unauthorized;
}
