package exportqueue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// gate is an exporter that takes batches only once it is opened, and keeps what it took.
type gate struct {
	open     chan struct{}
	mu       sync.Mutex
	batches  [][]int
	fail     error
	shutdown int
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Export(ctx context.Context, batch []int) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return g.fail
	}
	g.batches = append(g.batches, slices.Clone(batch))
	return nil
}

func (g *gate) Shutdown(context.Context) error {
	g.mu.Lock()
	g.shutdown++
	g.mu.Unlock()
	return nil
}

func (g *gate) items() (all []int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.batches {
		all = append(all, b...)
	}
	return all
}

// TestQueueCountsEveryItem: an exporter that stalls makes the queue drop and count what does
// not fit, without Add waiting; what fits is exported once it answers; an item added after
// shutdown is counted too. Every item added is accounted for, and the dropped ones say so.
func TestQueueCountsEveryItem(t *testing.T) {
	var c Counts
	g := newGate()
	q := New[int](g, Settings{Size: 2, Batch: 1, Interval: time.Hour, ExportTimeout: time.Minute}, &c)
	const added = 10
	refused := 0
	for i := range added {
		if !q.Add(i) { // never waits: the exporter is stalled
			refused++
		}
	}
	// At most one batch in the exporter and two items in the queue: the rest were dropped.
	if d := c.DroppedFor(DropQueueFull); d < added-3 || d != uint64(refused) {
		t.Fatalf("%d items dropped as queue_full, Add refused %d, want at least %d", d, refused, added-3)
	}
	close(g.open)
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	exported, dropped := c.Exported(), c.DroppedFor(DropQueueFull)
	if exported+dropped != added || uint64(len(g.items())) != exported {
		t.Fatalf("exported %d + dropped %d != %d added (the exporter took %d)", exported, dropped, added, len(g.items()))
	}
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q.Add(99) {
		t.Error("Add after Shutdown queued the item")
	}
	if n := c.DroppedFor(DropShutdown); n != 1 {
		t.Errorf("%d items dropped at shutdown, want 1", n)
	}
	if c.Dropped() != dropped+1 {
		t.Errorf("Dropped() = %d, want %d", c.Dropped(), dropped+1)
	}
	if err := q.ForceFlush(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Errorf("ForceFlush after Shutdown: %v, want ErrShutdown", err)
	}
}

// TestQueueSendsFullBatches: a full batch is sent without waiting for the interval (an hour
// here), in the order added; what does not fill a batch waits for a flush.
func TestQueueSendsFullBatches(t *testing.T) {
	var c Counts
	g := newGate()
	close(g.open)
	q := New[int](g, Settings{Size: 64, Batch: 4, Interval: time.Hour, ExportTimeout: time.Minute}, &c)
	defer q.Shutdown(context.Background())
	for i := range 6 {
		q.Add(i)
	}
	// Wait for the batch itself: the sender was kicked by the fourth item.
	for c.Exported() < 4 {
		time.Sleep(time.Millisecond)
	}
	if got := g.items(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("the first batch was %v, want [0 1 2 3] (the rest waits for a batch)", got)
	}
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := g.items(); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) || c.Exported() != 6 {
		t.Fatalf("after the flush the exporter has %v (%d counted), want 0 to 5", got, c.Exported())
	}
}

// TestQueueShutdownExportsWhatIsQueued: Shutdown sends what waits, then shuts the exporter down
// once; a Shutdown whose context ends first says so.
func TestQueueShutdownExportsWhatIsQueued(t *testing.T) {
	var c Counts
	g := newGate()
	close(g.open)
	q := New[int](g, Settings{Size: 64, Batch: 64, Interval: time.Hour, ExportTimeout: time.Minute}, &c)
	for i := range 3 {
		q.Add(i)
	}
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := g.items(); !slices.Equal(got, []int{0, 1, 2}) || g.shutdown != 1 {
		t.Fatalf("after Shutdown the exporter has %v and was shut down %d times", got, g.shutdown)
	}

	stalled := newGate() // never opened: the export waits for its timeout
	q = New[int](stalled, Settings{Size: 64, Batch: 64, Interval: time.Hour, ExportTimeout: time.Hour}, &c)
	q.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: %v", err)
	}
	close(stalled.open) // lets the sender finish
}

// TestQueueCountsFailedExports: a batch the exporter fails is counted as export_failed and its
// error kept.
func TestQueueCountsFailedExports(t *testing.T) {
	var c Counts
	g := newGate()
	close(g.open)
	g.fail = errors.New("collector said no")
	q := New[int](g, Settings{Size: 16, Batch: 16, Interval: time.Hour, ExportTimeout: time.Minute}, &c)
	defer q.Shutdown(context.Background())
	for i := range 3 {
		q.Add(i)
	}
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := c.DroppedFor(DropExportFailed); n != 3 || c.Exported() != 0 {
		t.Fatalf("%d counted as export_failed and %d exported, want 3 and 0", n, c.Exported())
	}
	if c.LastError() != "collector said no" {
		t.Errorf("last error %q", c.LastError())
	}
}

// TestQueueCountsRejectedItems: a batch the receiver took in part (a RejectedError) counts its
// rejected things as dropped for rejected and the rest as exported, never more than the batch
// held, and keeps what the receiver said as the last error.
func TestQueueCountsRejectedItems(t *testing.T) {
	for _, tc := range []struct{ rejected, wantRejected, wantExported uint64 }{
		{rejected: 2, wantRejected: 2, wantExported: 4},
		{rejected: 99, wantRejected: 6, wantExported: 0}, // a receiver claiming more than it got
	} {
		var c Counts
		g := newGate()
		close(g.open)
		g.fail = &RejectedError{Rejected: tc.rejected, Err: errors.New("2 spans too old")}
		q := NewWeighted[int](g, Settings{Size: 16, Batch: 16, Interval: time.Hour, ExportTimeout: time.Minute}, &c,
			func(int) uint64 { return 2 })
		for i := range 3 {
			q.Add(i)
		}
		if err := q.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if r, e := c.DroppedFor(DropRejected), c.Exported(); r != tc.wantRejected || e != tc.wantExported || c.DroppedFor(DropExportFailed) != 0 {
			t.Errorf("rejected %d: counted %d rejected, %d exported, %d export_failed; want %d, %d, 0",
				tc.rejected, r, e, c.DroppedFor(DropExportFailed), tc.wantRejected, tc.wantExported)
		}
		if c.LastError() != "2 spans too old" {
			t.Errorf("last error %q", c.LastError())
		}
		_ = q.Shutdown(context.Background())
	}
}

// TestWeightedQueueCountsWhatItemsStandFor: items that stand for several things each (the
// gateway's span record carrying two spans) are counted by weight when exported, when
// refused for a full queue, when the export fails and after shutdown; Size still counts items.
func TestWeightedQueueCountsWhatItemsStandFor(t *testing.T) {
	var c Counts
	g := newGate()
	q := NewWeighted[int](g, Settings{Size: 2, Batch: 1, Interval: time.Hour, ExportTimeout: time.Minute}, &c,
		func(i int) uint64 { return uint64(i) })
	var added, refused uint64
	for i := 1; i <= 10; i++ {
		added += uint64(i)
		if !q.Add(i) {
			refused += uint64(i)
		}
	}
	if d := c.DroppedFor(DropQueueFull); d != refused || refused == 0 {
		t.Fatalf("queue_full counts %d, want %d (the weights of the refused items)", d, refused)
	}
	close(g.open)
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var took uint64
	for _, i := range g.items() {
		took += uint64(i)
	}
	if c.Exported() != took || took+refused != added {
		t.Fatalf("exported %d, the exporter took %d, refused %d: want %d in all", c.Exported(), took, refused, added)
	}
	g.mu.Lock()
	g.fail = errors.New("refused")
	g.mu.Unlock()
	q.Add(5)
	if err := q.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := c.DroppedFor(DropExportFailed); d != 5 {
		t.Fatalf("export_failed counts %d, want 5", d)
	}
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.Add(7)
	if d := c.DroppedFor(DropShutdown); d != 7 {
		t.Fatalf("shutdown counts %d, want 7", d)
	}
}
