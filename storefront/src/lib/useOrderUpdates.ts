import { useEffect, useRef, useState } from 'react';
import { OrdersSocket, type OrderUpdate, type SocketState } from './ordersSocket';
import { useLocation } from './router';
import { useAuth } from '../state/auth';

/** Subscribes to the shopper's order status changes while the calling component is mounted. */
export function useOrderUpdates(token: string | null, onUpdate: (u: OrderUpdate) => void, onResync?: () => void): SocketState {
  const [state, setState] = useState<SocketState>('connecting');
  const { expire } = useAuth();
  const { href } = useLocation();
  const cb = useRef({ onUpdate, onResync, onUnauthorized: () => expire(href) });
  cb.current = { onUpdate, onResync, onUnauthorized: () => expire(href) };
  useEffect(() => {
    if (!token) return;
    const s = new OrdersSocket(token, {
      onUpdate: (u) => cb.current.onUpdate(u),
      onUnauthorized: () => cb.current.onUnauthorized(),
      onResync: () => cb.current.onResync?.(),
      onState: setState,
    });
    s.start();
    return () => s.stop();
  }, [token]);
  return state;
}
