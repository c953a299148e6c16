// Package exportqueue is the bounded batching queue between whatever records telemetry and
// the exporter that sends it: the gateway's span records and the services' SDK spans go through
// it. Adding never waits: when the queue is full the item is dropped and counted. One goroutine
// takes what is queued in batches and hands each batch to the exporter; ForceFlush and Shutdown
// export what is queued.
//
// It exists because the SDK's BatchSpanProcessor drops silently (its counts are behind an
// experimental switch) and wakes its sender for every span; this one counts every item it loses,
// by reason, and wakes its sender once per batch.
package exportqueue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Exporter sends batches. Export is called by the queue's goroutine only, one batch at a time;
// the batch slice is the queue's and is reused once Export returns, so Export must not keep it
// (the items themselves are the exporter's to keep or release). Shutdown is called once, after
// the last Export.
type Exporter[T any] interface {
	Export(ctx context.Context, batch []T) error
	Shutdown(ctx context.Context) error
}

// Settings size and time a queue.
type Settings struct {
	// Size bounds the items waiting; Batch is the most handed to one Export (at most Size).
	Size, Batch int
	// Interval is how long an item may wait for a batch to fill.
	Interval time.Duration
	// ExportTimeout bounds one Export.
	ExportTimeout time.Duration
}

// Reasons an item is dropped: the values of the reason label of a dropped counter.
const (
	DropQueueFull    = iota // the queue was full: the collector is slow or down
	DropExportFailed        // the exporter failed or ran out of time
	DropShutdown            // added after Shutdown
	DropRejected            // the receiver took the batch but refused these (an OTLP partial success)
	NumDropReasons
)

// DropReasons names the reasons, indexed by the constants above.
var DropReasons = [NumDropReasons]string{"queue_full", "export_failed", "shutdown", "rejected"}

// RejectedError is what Export returns when the receiver took the batch but refused part of it
// (OTLP's partial success): Rejected of the batch's things (as its weight counts them) are
// counted as dropped for DropRejected, the rest as exported. A batch is not sent again for it.
type RejectedError struct {
	Rejected uint64
	Err      error // what the receiver said
}

func (e *RejectedError) Error() string { return e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// Counts are what queues exported and lost. One Counts may outlive many queues (the gateway
// keeps one across reloads). Safe for concurrent use; the zero value is ready.
type Counts struct {
	exported atomic.Uint64
	dropped  [NumDropReasons]atomic.Uint64
	lastErr  atomic.Pointer[string]
}

// Exported returns how many items the exporter took.
func (c *Counts) Exported() uint64 { return c.exported.Load() }

// DroppedFor returns how many items were lost for reason (one of the Drop constants).
func (c *Counts) DroppedFor(reason int) uint64 { return c.dropped[reason].Load() }

// Dropped returns how many items were lost, for every reason together.
func (c *Counts) Dropped() uint64 {
	var n uint64
	for i := range c.dropped {
		n += c.dropped[i].Load()
	}
	return n
}

// LastError is the last export failure, or "".
func (c *Counts) LastError() string {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// AddDropped counts n items lost for reason before they reached a queue: what records them
// could not (the gateway's tracer when every span record is in use counts them as queue_full,
// as the queue would have).
func (c *Counts) AddDropped(reason int, n uint64) { c.dropped[reason].Add(n) }

func (c *Counts) noteError(err error) {
	msg := err.Error()
	c.lastErr.Store(&msg)
}

// ErrShutdown is returned by ForceFlush on a queue that was shut down.
var ErrShutdown = errors.New("export queue is shut down")

// Queue is a bounded channel that Add never waits on and one goroutine that sends its batches.
// Build it with New; every method is safe for concurrent use.
//
// The sender does not wait on the channel itself: it would be woken for every item, two
// goroutine switches per item. It wakes when a batch is waiting (Add kicks it), at each
// Interval, on a flush and at shutdown, and then takes what the channel holds.
type Queue[T any] struct {
	exporter Exporter[T]
	items    chan T
	kick     chan struct{} // a batch is waiting; capacity 1, never blocks
	// wake is how many queued items kick the sender: a batch, or half the queue when that is
	// less, so that items added while it wakes still find room.
	wake   int
	flush  chan chan struct{}
	stop   chan struct{}
	done   chan struct{}
	set    Settings
	counts *Counts
	// weight is how many exported things an item stands for (the gateway's span record may
	// carry two spans): the counts count those, Size and Batch count items.
	weight   func(T) uint64
	stopOnce sync.Once
}

// New starts a queue that hands batches to exp and counts into counts. Its goroutine runs until
// Shutdown.
func New[T any](exp Exporter[T], s Settings, counts *Counts) *Queue[T] {
	return NewWeighted(exp, s, counts, func(T) uint64 { return 1 })
}

// NewWeighted is New for items that stand for weight(item) things each: what counts counts.
// weight is called on the goroutine that adds an item, and by the queue's goroutine before the
// item is exported (while the exporter still has not released it).
func NewWeighted[T any](exp Exporter[T], s Settings, counts *Counts, weight func(T) uint64) *Queue[T] {
	s.Size = max(1, s.Size)
	s.Batch = max(1, min(s.Batch, s.Size))
	if s.Interval <= 0 { // a ticker needs a positive interval; these are the SDK's defaults
		s.Interval = 5 * time.Second
	}
	if s.ExportTimeout <= 0 {
		s.ExportTimeout = 30 * time.Second
	}
	q := &Queue[T]{
		exporter: exp, items: make(chan T, s.Size), kick: make(chan struct{}, 1), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}), set: s, counts: counts,
		wake: max(1, min(s.Batch, s.Size/2)), weight: weight,
	}
	go q.run() // owned by the queue: Shutdown stops it and waits for it
	return q
}

// Add queues item for export and reports whether it did. It never blocks: when the queue is
// full, or shut down, item is dropped, counted, and stays the caller's.
func (q *Queue[T]) Add(item T) bool {
	select {
	case <-q.stop:
		q.counts.dropped[DropShutdown].Add(q.weight(item))
		return false
	default:
	}
	select {
	case q.items <- item:
		if len(q.items) >= q.wake {
			select {
			case q.kick <- struct{}{}:
			default: // already kicked
			}
		}
		return true
	default:
		q.counts.dropped[DropQueueFull].Add(q.weight(item))
		return false
	}
}

// ForceFlush exports what is queued now before it returns.
func (q *Queue[T]) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return ErrShutdown
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, within ctx, then shuts the exporter down. Items added after
// it began are dropped and counted (DropShutdown).
func (q *Queue[T]) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exporter.Shutdown(ctx)
}

func (q *Queue[T]) run() {
	defer close(q.done)
	batch := make([]T, 0, q.set.Batch)
	tick := time.NewTicker(q.set.Interval)
	defer tick.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		var n uint64
		for _, it := range batch { // before Export, which may release the items
			n += q.weight(it)
		}
		ctx, cancel := context.WithTimeout(context.Background(), q.set.ExportTimeout)
		err := q.exporter.Export(ctx, batch)
		cancel()
		var rejected *RejectedError
		switch {
		case err == nil:
			q.counts.exported.Add(n)
		case errors.As(err, &rejected):
			r := min(rejected.Rejected, n)
			q.counts.exported.Add(n - r)
			q.counts.dropped[DropRejected].Add(r)
			q.counts.noteError(err)
		default:
			q.counts.dropped[DropExportFailed].Add(n)
			q.counts.noteError(err)
		}
		clear(batch)
		batch = batch[:0]
	}
	// take moves what the channel holds into batches, sending each full one; all sends the
	// rest too, take keeps it for the next wake.
	take := func(all bool) {
		for {
			select {
			case it := <-q.items:
				batch = append(batch, it)
				if len(batch) == q.set.Batch {
					send()
				}
			default:
				if all {
					send()
				}
				return
			}
		}
	}
	for {
		select {
		case <-q.kick:
			take(false)
		case <-tick.C:
			take(true)
		case ack := <-q.flush:
			take(true)
			close(ack)
		case <-q.stop:
			take(true)
			return
		}
	}
}
