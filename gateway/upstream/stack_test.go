package upstream

import (
	"sync"
	"testing"
)

// TestIndexStackConcurrent hammers push and pop from many goroutines; every index must be held
// by at most one goroutine at a time and none may be lost.
func TestIndexStackConcurrent(t *testing.T) {
	const n = 64
	s := newIndexStack(n)
	for i := range n {
		s.push(i)
	}
	var owners [n]int32
	var mu sync.Mutex // guards owners only; the stack itself is what is under test
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 {
				i := s.pop()
				if i < 0 {
					continue
				}
				mu.Lock()
				if owners[i] != 0 {
					mu.Unlock()
					t.Errorf("index %d popped by %d while held by %d", i, g+1, owners[i])
					return
				}
				owners[i] = int32(g + 1)
				mu.Unlock()
				mu.Lock()
				owners[i] = 0
				mu.Unlock()
				s.push(i)
			}
		}()
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := s.pop(); i >= 0; i = s.pop() {
		if seen[i] {
			t.Fatalf("index %d twice in the stack", i)
		}
		seen[i] = true
	}
	if len(seen) != n {
		t.Fatalf("%d indexes left, want %d", len(seen), n)
	}
}
