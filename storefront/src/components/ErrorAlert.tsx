import { useEffect, useState } from 'react';
import { describeError, tooManyRequests, type ErrorContext } from '../lib/errors';

interface Props {
  error: unknown;
  context?: ErrorContext;
  /** Overrides the wording picked from the status. */
  message?: string;
  children?: React.ReactNode;
  /** Offers a "Try again" button (for loads; forms retry by submitting again). */
  onRetry?: () => void;
}

/**
 * An error the shopper should read now: role="alert" so screen readers announce it. For a 429
 * the seconds count down on screen, while assistive technology hears the sentence once.
 */
export function ErrorAlert({ error, context, message, children, onRetry }: Props) {
  const view = describeError(error, context);
  const text = message ?? view.message;
  const remaining = useCountdown(view.retryAfter, error);
  return (
    <div className="alert alert-error" role="alert">
      {view.retryAfter != null && remaining != null ? (
        <p>
          <span className="visually-hidden">{text}</span>
          <span aria-hidden="true">{remaining > 0 ? tooManyRequests(remaining) : 'You can try again now.'}</span>
        </p>
      ) : (
        <p>{text}</p>
      )}
      {children}
      {onRetry && (
        <p>
          <button type="button" className="small" onClick={onRetry}>
            Try again
          </button>
        </p>
      )}
      {view.requestId && <p className="request-id">Reference: {view.requestId}</p>}
    </div>
  );
}

function useCountdown(seconds: number | undefined, key: unknown): number | null {
  const [left, setLeft] = useState<number | null>(seconds ?? null);
  useEffect(() => {
    if (seconds == null) {
      setLeft(null);
      return;
    }
    const until = Date.now() + seconds * 1000;
    setLeft(seconds);
    const t = setInterval(() => {
      const l = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setLeft(l);
      if (l === 0) clearInterval(t);
    }, 250);
    return () => clearInterval(t);
  }, [seconds, key]);
  return left;
}
