import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import type { Product } from '../lib/types';
import { toCents } from '../lib/money';
import { readJSON, writeJSON } from './storage';

export const CART_KEY = 'archway.cart';
export const MAX_QUANTITY = 99;

export interface CartLine {
  productId: number;
  name: string;
  price: number;
  /** Stock when the line was last touched; the server has the final word at checkout. */
  inventory: number;
  quantity: number;
}

interface CartValue {
  lines: CartLine[];
  count: number;
  totalCents: number;
  add: (p: Product, quantity: number) => void;
  setQuantity: (productId: number, quantity: number) => void;
  remove: (productId: number) => void;
  clear: () => void;
}

const CartContext = createContext<CartValue | null>(null);

export function maxFor(line: { inventory: number }): number {
  return Math.max(0, Math.min(MAX_QUANTITY, line.inventory));
}

function sanitize(raw: unknown): CartLine[] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(
    (l): l is CartLine =>
      l && typeof l.productId === 'number' && typeof l.name === 'string' && typeof l.price === 'number' &&
      typeof l.quantity === 'number' && l.quantity > 0,
  ).map((l) => ({ ...l, inventory: typeof l.inventory === 'number' ? l.inventory : MAX_QUANTITY }));
}

export function loadCart(): CartLine[] {
  return sanitize(readJSON(CART_KEY));
}

export function CartProvider({ children }: { children: ReactNode }) {
  const [lines, setLines] = useState<CartLine[]>(loadCart);

  useEffect(() => {
    const onStorage = (e: StorageEvent) => {
      if (e.key === CART_KEY || e.key === null) setLines(loadCart());
    };
    window.addEventListener('storage', onStorage);
    return () => window.removeEventListener('storage', onStorage);
  }, []);

  const update = useCallback((f: (prev: CartLine[]) => CartLine[]) => {
    setLines((prev) => {
      const next = f(prev);
      writeJSON(CART_KEY, next.length ? next : null);
      return next;
    });
  }, []);

  const add = useCallback(
    (p: Product, quantity: number) =>
      update((prev) => {
        const existing = prev.find((l) => l.productId === p.id);
        const max = maxFor(p);
        if (existing) {
          return prev.map((l) =>
            l.productId === p.id
              ? { ...l, name: p.name, price: p.price, inventory: p.inventory, quantity: Math.min(max, l.quantity + quantity) }
              : l,
          );
        }
        const q = Math.min(max, quantity);
        if (q <= 0) return prev;
        return [...prev, { productId: p.id, name: p.name, price: p.price, inventory: p.inventory, quantity: q }];
      }),
    [update],
  );

  const setQuantity = useCallback(
    (productId: number, quantity: number) =>
      update((prev) =>
        prev.map((l) => (l.productId === productId ? { ...l, quantity: Math.max(1, Math.min(maxFor(l), quantity)) } : l)),
      ),
    [update],
  );

  const remove = useCallback((productId: number) => update((prev) => prev.filter((l) => l.productId !== productId)), [update]);
  const clear = useCallback(() => update(() => []), [update]);

  const value = useMemo<CartValue>(() => {
    const count = lines.reduce((n, l) => n + l.quantity, 0);
    const totalCents = lines.reduce((n, l) => n + toCents(l.price) * l.quantity, 0);
    return { lines, count, totalCents, add, setQuantity, remove, clear };
  }, [lines, add, setQuantity, remove, clear]);
  return <CartContext.Provider value={value}>{children}</CartContext.Provider>;
}

export function useCart(): CartValue {
  const v = useContext(CartContext);
  if (!v) throw new Error('useCart outside CartProvider');
  return v;
}
