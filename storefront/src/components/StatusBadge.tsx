const LABELS: Record<string, string> = {
  pending: 'Pending payment',
  paid: 'Paid',
  shipped: 'Shipped',
  delivered: 'Delivered',
  cancelled: 'Cancelled',
  canceled: 'Cancelled',
  failed: 'Payment failed',
};

/** The status in words (colour only reinforces it). data-status carries the raw value. */
export function StatusBadge({ status }: { status: string }) {
  const known = status in LABELS;
  return (
    <span className={`badge badge-${known ? status : 'other'}`} data-status={status}>
      {LABELS[status] ?? status}
    </span>
  );
}
