import { useEffect, useRef, useState } from 'react';
import { OrdersSocket, ordersSocketURL, type OrderUpdate, type SocketState } from './ordersSocket';

/** Subscribes to the shopper's order status changes while the calling component is mounted. */
export function useOrderUpdates(token: string | null, onUpdate: (u: OrderUpdate) => void, onResync?: () => void): SocketState {
  const [state, setState] = useState<SocketState>('connecting');
  const cb = useRef({ onUpdate, onResync });
  cb.current = { onUpdate, onResync };
  useEffect(() => {
    if (!token) return;
    const s = new OrdersSocket(ordersSocketURL(token), {
      onUpdate: (u) => cb.current.onUpdate(u),
      onResync: () => cb.current.onResync?.(),
      onState: setState,
    });
    s.start();
    return () => s.stop();
  }, [token]);
  return state;
}
