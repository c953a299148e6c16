package upstream

import "sync/atomic"

// indexStack is a lock-free LIFO of small integers (slot indexes) with a version counter in the
// head word, so a pop racing with pop-push of the same index (the ABA problem) fails its
// compare-and-swap instead of corrupting the stack. Capacity is fixed at creation.
type indexStack struct {
	head atomic.Uint64   // version<<32 | (top index + 1); 0 in the low half means empty
	next []atomic.Uint32 // next[i] is (index below i) + 1, or 0
}

func newIndexStack(capacity int) indexStack {
	return indexStack{next: make([]atomic.Uint32, capacity)}
}

func (s *indexStack) push(i int) {
	for {
		h := s.head.Load()
		s.next[i].Store(uint32(h))
		if s.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(i+1)) {
			return
		}
	}
}

// pop returns the top index, or -1 when the stack is empty.
func (s *indexStack) pop() int {
	for {
		h := s.head.Load()
		top := uint32(h)
		if top == 0 {
			return -1
		}
		below := s.next[top-1].Load()
		if s.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(below)) {
			return int(top - 1)
		}
	}
}
