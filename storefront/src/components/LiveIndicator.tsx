import type { SocketState } from '../lib/ordersSocket';

const TEXT: Record<SocketState, string> = {
  connecting: 'Connecting to live updates…',
  open: 'Live updates on',
  reconnecting: 'Live updates interrupted, reconnecting…',
  closed: 'Live updates off',
};

/** Whether status changes arrive by themselves; a fixed-size line so it never shifts the page. */
export function LiveIndicator({ state }: { state: SocketState }) {
  return (
    <p className={`live live-${state}`} data-live={state}>
      <span className="dot" aria-hidden="true" />
      {TEXT[state]}
    </p>
  );
}
