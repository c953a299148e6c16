import { useCallback, useEffect, useRef, useState } from 'react';

export interface Resource<T> {
  data: T | undefined;
  /** The key the shown data was loaded for (it lags the requested key while the next loads). */
  dataKey: string | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
  /** Replace the data in place (e.g. after a live update). */
  set: (f: (prev: T | undefined) => T | undefined) => void;
}

/**
 * Loads data when the key changes, aborting the previous request. The previous data stays
 * visible while the next loads, so the page keeps its layout.
 */
export function useResource<T>(key: string | null, load: (signal: AbortSignal) => Promise<T>): Resource<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [dataKey, setDataKey] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState<boolean>(key != null);
  const [nonce, setNonce] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    if (key == null) {
      setLoading(false);
      return;
    }
    const ctl = new AbortController();
    setLoading(true);
    loadRef.current(ctl.signal).then(
      (d) => {
        if (ctl.signal.aborted) return;
        setData(d);
        setDataKey(key);
        setError(null);
        setLoading(false);
      },
      (e) => {
        if (ctl.signal.aborted) return;
        setError(e);
        setLoading(false);
      },
    );
    return () => ctl.abort();
  }, [key, nonce]);

  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { data, dataKey, error, loading, reload, set: setData };
}
