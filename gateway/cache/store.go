package cache

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// numShards splits a store so concurrent lookups rarely share a lock.
const numShards = 16

// entryOverhead approximates what an entry costs besides its key, headers and body (the entry,
// its node and its map slot), so a budget of many tiny entries is honest too.
const entryOverhead = 160

// Store holds a route's entries within a byte budget, evicting with SIEVE: a hit only sets the
// entry's visited bit; when the budget is exceeded a hand sweeps from the oldest entry toward
// the newest, clearing visited bits and evicting the first entry not visited since the hand last
// passed. That keeps popular entries through scans of one-off URLs, as LRU does not, at the cost
// of one atomic store per hit instead of a list move under a lock.
//
// Keys are the full cache keys; lookups hash them with a random seed and compare the key, so a
// collision can never serve the wrong response. Safe for concurrent use.
type Store struct {
	seed   maphash.Seed
	shards [numShards]storeShard
	budget atomic.Int64
	bytes  atomic.Int64
	items  atomic.Int64

	evictions atomic.Uint64
	next      atomic.Uint32 // the shard the next budget-driven eviction starts at
}

type storeShard struct {
	mu         sync.Mutex
	m          map[uint64]*node
	head, tail *node // head: newest
	hand       *node
	_          [24]byte
}

type node struct {
	e          *Entry
	hash       uint64
	prev, next *node // prev: newer
	visited    atomic.Bool
}

// NewStore returns an empty store holding at most budget bytes.
func NewStore(budget int64) *Store {
	s := &Store{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = map[uint64]*node{}
	}
	s.budget.Store(budget)
	return s
}

// Hash returns the lookup hash of a key.
func (s *Store) Hash(key []byte) uint64 { return maphash.Bytes(s.seed, key) }

// Get returns the entry stored under key, or nil.
func (s *Store) Get(h uint64, key []byte) *Entry {
	sh := &s.shards[h%numShards]
	sh.mu.Lock()
	n := sh.m[h]
	sh.mu.Unlock()
	if n == nil || n.e.Key != string(key) {
		return nil
	}
	if !n.visited.Load() {
		n.visited.Store(true)
	}
	return n.e
}

// Put stores e under its key, replacing what was there, then evicts until the store is within
// its budget. An entry larger than the whole budget is not stored.
func (s *Store) Put(e *Entry) {
	size := e.Size()
	if size > s.budget.Load() {
		return
	}
	h := s.Hash([]byte(e.Key))
	sh := &s.shards[h%numShards]
	sh.mu.Lock()
	if old := sh.m[h]; old != nil {
		sh.unlink(old)
		delete(sh.m, h)
		s.bytes.Add(-old.e.Size())
		s.items.Add(-1)
	}
	n := &node{e: e, hash: h}
	sh.m[h] = n
	sh.pushHead(n)
	s.bytes.Add(size)
	s.items.Add(1)
	sh.mu.Unlock()
	s.enforce(int(h % numShards))
}

// SetBudget changes the budget and evicts down to it.
func (s *Store) SetBudget(budget int64) {
	s.budget.Store(budget)
	s.enforce(0)
}

func (s *Store) enforce(start int) {
	for i := 0; s.bytes.Load() > s.budget.Load() && i < 2*numShards; i++ {
		sh := &s.shards[(start+i)%numShards]
		sh.mu.Lock()
		for s.bytes.Load() > s.budget.Load() && sh.tail != nil {
			s.evictOne(sh)
		}
		sh.mu.Unlock()
	}
}

// evictOne runs the SIEVE hand once around at most; sh.mu is held.
func (s *Store) evictOne(sh *storeShard) {
	n := sh.hand
	if n == nil {
		n = sh.tail
	}
	for n.visited.Load() {
		n.visited.Store(false)
		n = n.prev
		if n == nil {
			n = sh.tail
		}
	}
	sh.hand = n.prev
	sh.unlink(n)
	delete(sh.m, n.hash)
	s.bytes.Add(-n.e.Size())
	s.items.Add(-1)
	s.evictions.Add(1)
}

func (sh *storeShard) pushHead(n *node) {
	n.next = sh.head
	if sh.head != nil {
		sh.head.prev = n
	}
	sh.head = n
	if sh.tail == nil {
		sh.tail = n
	}
}

func (sh *storeShard) unlink(n *node) {
	if sh.hand == n {
		sh.hand = n.prev
	}
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		sh.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		sh.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

// Delete removes the entry stored under key.
func (s *Store) Delete(key []byte) {
	h := s.Hash(key)
	sh := &s.shards[h%numShards]
	sh.mu.Lock()
	if n := sh.m[h]; n != nil && n.e.Key == string(key) {
		sh.unlink(n)
		delete(sh.m, h)
		s.bytes.Add(-n.e.Size())
		s.items.Add(-1)
	}
	sh.mu.Unlock()
}

// Purge removes the entries whose path starts with pathPrefix ("" or "/": all) and returns how
// many it removed.
func (s *Store) Purge(pathPrefix string) int {
	all := pathPrefix == "" || pathPrefix == "/"
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for h, n := range sh.m {
			if all || strings.HasPrefix(n.e.Path, pathPrefix) {
				sh.unlink(n)
				delete(sh.m, h)
				s.bytes.Add(-n.e.Size())
				s.items.Add(-1)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

// Bytes is what the entries held cost against the budget.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// Len is the number of entries held.
func (s *Store) Len() int64 { return s.items.Load() }

// Evictions is the number of entries evicted to stay within the budget.
func (s *Store) Evictions() uint64 { return s.evictions.Load() }
