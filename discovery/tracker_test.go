package discovery

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var errConsulDown = errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")

func newTestTracker(t *testing.T, p Policy) (*Tracker, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	tr, err := NewTracker("products", p, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return tr, clock
}

func good(idList ...string) Snapshot {
	return Snapshot{Service: "products", Endpoints: endpoints(idList...)}
}

func failed(last ...string) Snapshot {
	return Snapshot{Service: "products", Endpoints: endpoints(last...), Err: errConsulDown}
}

func wantState(t *testing.T, s State, status Status, idList ...string) {
	t.Helper()
	if s.Status != status || !slices.Equal(ids(s.Endpoints), idList) {
		t.Fatalf("state = %s %v; want %s %v", s.Status, ids(s.Endpoints), status, idList)
	}
}

func TestTrackerKeepLastHoldsForBoundedTimeThenFails(t *testing.T) {
	tr, clock := newTestTracker(t, Policy{OnEmpty: OnEmptyKeepLast, KeepLastFor: time.Minute})
	wantState(t, tr.State(), StatusPending)
	if !tr.Update(good("a", "b", "c")) {
		t.Fatal("first set: Update reported no change")
	}
	wantState(t, tr.State(), StatusOK, "a", "b", "c")

	emptyAt := clock.Now()
	if tr.Update(good()) {
		t.Fatal("empty under keep_last: Update reported a change of endpoints")
	}
	s := tr.State()
	wantState(t, s, StatusKeptLast, "a", "b", "c")
	if !s.EmptySince.Equal(emptyAt) || !s.KeepUntil.Equal(emptyAt.Add(time.Minute)) {
		t.Fatalf("EmptySince=%v KeepUntil=%v; want %v and a minute later", s.EmptySince, s.KeepUntil, emptyAt)
	}

	// Another "empty" later does not restart the clock.
	clock.Advance(30 * time.Second)
	tr.Update(good())
	clock.Advance(29 * time.Second)
	wantState(t, tr.State(), StatusKeptLast, "a", "b", "c")

	// The deadline takes effect at the read, without a new snapshot.
	clock.Advance(time.Second)
	wantState(t, tr.State(), StatusEmpty)

	if !tr.Update(good("d")) {
		t.Fatal("back from empty: Update reported no change")
	}
	s = tr.State()
	wantState(t, s, StatusOK, "d")
	if !s.EmptySince.IsZero() || !s.KeepUntil.IsZero() {
		t.Fatalf("EmptySince=%v KeepUntil=%v after recovery; want zero", s.EmptySince, s.KeepUntil)
	}
}

func TestTrackerFailDropsEndpointsAtOnce(t *testing.T) {
	tr, _ := newTestTracker(t, Policy{OnEmpty: OnEmptyFail})
	tr.Update(good("a", "b"))
	if !tr.Update(good()) {
		t.Fatal("empty under fail: Update reported no change")
	}
	wantState(t, tr.State(), StatusEmpty)
}

func TestTrackerDefaultPolicyKeepsLastForDefaultTime(t *testing.T) {
	tr, clock := newTestTracker(t, Policy{})
	tr.Update(good("a"))
	tr.Update(good())
	clock.Advance(DefaultKeepLastFor - time.Nanosecond)
	wantState(t, tr.State(), StatusKeptLast, "a")
	clock.Advance(time.Nanosecond)
	wantState(t, tr.State(), StatusEmpty)
}

func TestTrackerEmptyFirstIsEmptyNotPending(t *testing.T) {
	tr, _ := newTestTracker(t, Policy{OnEmpty: OnEmptyKeepLast})
	if !tr.Update(good()) {
		t.Fatal("first authoritative snapshot, even empty, must count as a change (pending is over)")
	}
	wantState(t, tr.State(), StatusEmpty)
}

func TestTrackerSourceErrorKeepsLastEndpoints(t *testing.T) {
	tr, clock := newTestTracker(t, Policy{OnEmpty: OnEmptyFail})
	tr.Update(good("a", "b", "c"))
	updated := tr.State().UpdatedAt

	clock.Advance(time.Second)
	// Even a failed snapshot carrying no endpoints must not empty the set.
	if tr.Update(Snapshot{Service: "products", Err: errConsulDown}) {
		t.Fatal("source error: Update reported a change of endpoints")
	}
	tr.Update(failed("a", "b", "c"))
	s := tr.State()
	wantState(t, s, StatusOK, "a", "b", "c")
	if !s.Stale() || !errors.Is(s.SourceErr, errConsulDown) || s.Errors != 2 {
		t.Fatalf("Stale=%v SourceErr=%v Errors=%d; want stale, the error, 2", s.Stale(), s.SourceErr, s.Errors)
	}
	if !s.UpdatedAt.Equal(updated) || !s.LastErrorAt.Equal(clock.Now()) {
		t.Fatalf("UpdatedAt=%v LastErrorAt=%v; want the last good time and now", s.UpdatedAt, s.LastErrorAt)
	}

	tr.Update(good("a", "b", "c"))
	s = tr.State()
	if s.Stale() || s.Errors != 2 || !errors.Is(s.LastError, errConsulDown) {
		t.Fatalf("after recovery Stale=%v Errors=%d LastError=%v; want fresh, count and last error kept", s.Stale(), s.Errors, s.LastError)
	}
}

func TestTrackerSourceErrorWhilePendingStaysPending(t *testing.T) {
	tr, _ := newTestTracker(t, Policy{})
	tr.Update(failed())
	s := tr.State()
	wantState(t, s, StatusPending)
	if !s.Stale() || s.Errors != 1 {
		t.Fatalf("Stale=%v Errors=%d; want the error recorded", s.Stale(), s.Errors)
	}
}

func TestTrackerKeepLastDeadlineRunsThroughSourceErrors(t *testing.T) {
	tr, clock := newTestTracker(t, Policy{OnEmpty: OnEmptyKeepLast, KeepLastFor: time.Minute})
	tr.Update(good("a"))
	tr.Update(good())
	clock.Advance(40 * time.Second)
	tr.Update(failed())
	wantState(t, tr.State(), StatusKeptLast, "a")
	clock.Advance(20 * time.Second)
	wantState(t, tr.State(), StatusEmpty)
}

func TestTrackerIgnoresOtherServices(t *testing.T) {
	tr, _ := newTestTracker(t, Policy{})
	if tr.Update(Snapshot{Service: "payments", Endpoints: endpoints("x")}) {
		t.Fatal("a snapshot of another service changed the tracker")
	}
	wantState(t, tr.State(), StatusPending)
}

func TestPolicyValidate(t *testing.T) {
	if err := (Policy{OnEmpty: "drop"}).Validate(); err == nil || !strings.Contains(err.Error(), `on_empty "drop"`) {
		t.Fatalf("unknown on_empty: err = %v", err)
	}
	if err := (Policy{KeepLastFor: -time.Second}).Validate(); err == nil {
		t.Fatal("negative keep_last_for accepted")
	}
	if _, err := NewTracker("s", Policy{OnEmpty: "drop"}, nil); err == nil {
		t.Fatal("NewTracker accepted an invalid policy")
	}
}

func TestFollowNotifiesChangesAndKeepLastExpiry(t *testing.T) {
	tr, err := NewTracker("products", Policy{OnEmpty: OnEmptyKeepLast, KeepLastFor: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := scriptedSource{feed: make(chan Snapshot)}
	changes := make(chan State, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Follow(ctx, src, func(s State) { changes <- s }) }()

	src.feed <- good("a", "b")
	if s := <-changes; s.Status != StatusOK || len(s.Endpoints) != 2 {
		t.Fatalf("first change = %s %v", s.Status, ids(s.Endpoints))
	}
	src.feed <- failed("a", "b") // no change of endpoints: no call
	emptyAt := time.Now()
	src.feed <- good() // kept: no change of endpoints, no call
	select {
	case s := <-changes:
		wantState(t, s, StatusEmpty)
		if waited := time.Since(emptyAt); waited < 250*time.Millisecond {
			t.Fatalf("expiry reported after %s; keep_last_for is 300ms", waited)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no change reported when keep_last expired")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow returned %v; want context.Canceled", err)
	}
}

type stoppingSource struct{}

func (stoppingSource) Watch(context.Context, chan<- Snapshot) error { return nil }

func TestFollowReportsASourceThatStops(t *testing.T) {
	tr, _ := NewTracker("products", Policy{}, nil)
	err := tr.Follow(context.Background(), stoppingSource{}, nil)
	if err == nil || !strings.Contains(err.Error(), "source for products stopped") {
		t.Fatalf("Follow = %v; want an error naming the stopped source", err)
	}
}
