package cache

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// minSlots is the smallest index; it doubles whenever it holds more entries than slots.
const minSlots = 64

// entryOverhead approximates what an entry costs besides its key, headers and body (the entry,
// its node and its index cell), so a budget of many tiny entries is honest too.
const entryOverhead = 160

// Store holds a route's entries within a byte budget, evicting with SIEVE: a hit only sets the
// entry's visited bit; when the budget is exceeded a hand sweeps from the oldest entry toward
// the newest, clearing visited bits and evicting the first entry not visited since the hand last
// passed. That keeps popular entries through scans of one-off URLs, as LRU does not, at the cost
// of one atomic store per hit instead of a list move under a lock.
//
// Lookups take no lock: they load the index (a table of slots, each the head of an immutable
// chain of cells) with atomic loads, so concurrent hits on two cores share no written cache
// line but the entry's visited bit, which only its first hit after a sweep writes. Writers
// (inserts, evictions, purges: the miss path) hold the list lock and publish each change by
// replacing a slot's chain, or the whole table when it grows, with one atomic store; a lookup
// sees the chain before or after a change, never half of one. Keys are the full cache keys;
// lookups hash them with a random seed and compare the key, so a collision can never serve the
// wrong response. Safe for concurrent use.
type Store struct {
	seed   maphash.Seed
	index  atomic.Pointer[table]
	budget atomic.Int64
	bytes  atomic.Int64
	items  atomic.Int64

	listMu     sync.Mutex
	head, tail *node // head: newest
	hand       *node
	byURI      map[uint64][]*node // by the hash of the key's resource part; for invalidation

	evictions atomic.Uint64
}

// table is the lookup index: one node per key hash. Written under listMu only.
type table struct {
	mask  uint64
	slots []atomic.Pointer[cell]
}

// cell links one node into a slot's chain. Immutable once published: a change builds new cells.
type cell struct {
	n    *node
	next *cell
}

func newTable(slots int) *table {
	return &table{mask: uint64(slots - 1), slots: make([]atomic.Pointer[cell], slots)}
}

// find returns the node indexed under hash h, or nil.
func (t *table) find(h uint64) *node {
	for c := t.slots[h&t.mask].Load(); c != nil; c = c.next {
		if c.n.hash == h {
			return c.n
		}
	}
	return nil
}

// set indexes n under its hash, replacing the node there; listMu is held.
func (t *table) set(n *node) {
	slot := &t.slots[n.hash&t.mask]
	slot.Store(&cell{n: n, next: without(slot.Load(), n.hash)})
}

// drop removes n from the index if it is the node there; listMu is held.
func (t *table) drop(n *node) {
	slot := &t.slots[n.hash&t.mask]
	if chain := slot.Load(); chain != nil && t.find(n.hash) == n {
		slot.Store(without(chain, n.hash))
	}
}

// without returns chain less the cell for hash h: the cells after it are shared, those before
// it copied, so a lookup walking the old chain is never disturbed.
func without(chain *cell, h uint64) *cell {
	if chain == nil {
		return nil
	}
	if chain.n.hash == h {
		return chain.next
	}
	rest := without(chain.next, h)
	if rest == chain.next {
		return chain
	}
	return &cell{n: chain.n, next: rest}
}

type node struct {
	e          *Entry
	hash, uri  uint64
	prev, next *node // prev: newer
	visited    atomic.Bool
}

// NewStore returns an empty store holding at most budget bytes.
func NewStore(budget int64) *Store {
	s := &Store{seed: maphash.MakeSeed(), byURI: map[uint64][]*node{}}
	s.index.Store(newTable(minSlots))
	s.budget.Store(budget)
	return s
}

// Hash returns the lookup hash of a key.
func (s *Store) Hash(key []byte) uint64 { return maphash.Bytes(s.seed, key) }

// Get returns the entry stored under key (whose hash is h), or nil. It takes no lock.
func (s *Store) Get(h uint64, key []byte) *Entry {
	n := s.index.Load().find(h)
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
	n := &node{e: e, hash: h, uri: s.Hash(resourceOf([]byte(e.Key)))}
	s.listMu.Lock()
	defer s.listMu.Unlock()
	t := s.index.Load()
	old := t.find(h)
	t.set(n)
	if old != nil {
		s.unlink(old)
		s.dropURI(old)
		s.bytes.Add(-old.e.Size())
		s.items.Add(-1)
	}
	s.byURI[n.uri] = append(s.byURI[n.uri], n)
	s.pushHead(n)
	s.bytes.Add(size)
	s.items.Add(1)
	s.enforce()
	s.grow()
}

// grow doubles the index once it holds more entries than slots; listMu is held. The new table
// has cells of its own: lookups still walking the old one finish there undisturbed.
func (s *Store) grow() {
	t := s.index.Load()
	if s.items.Load() <= int64(len(t.slots)) {
		return
	}
	bigger := newTable(2 * len(t.slots))
	for n := s.head; n != nil; n = n.next {
		bigger.set(n)
	}
	s.index.Store(bigger)
}

// SetBudget changes the budget and evicts down to it.
func (s *Store) SetBudget(budget int64) {
	s.budget.Store(budget)
	s.listMu.Lock()
	s.enforce()
	s.listMu.Unlock()
}

// enforce evicts until the store is within budget; listMu is held.
func (s *Store) enforce() {
	for s.bytes.Load() > s.budget.Load() && s.tail != nil {
		n := s.hand
		if n == nil {
			n = s.tail
		}
		for n.visited.Load() {
			n.visited.Store(false)
			if n = n.prev; n == nil {
				n = s.tail
			}
		}
		s.hand = n.prev
		s.remove(n)
		s.evictions.Add(1)
	}
}

// remove takes n out of the list and the index; listMu is held.
func (s *Store) remove(n *node) {
	s.unlink(n)
	s.dropURI(n)
	s.index.Load().drop(n)
	s.bytes.Add(-n.e.Size())
	s.items.Add(-1)
}

// dropURI takes n out of the resource index; listMu is held.
func (s *Store) dropURI(n *node) {
	list := s.byURI[n.uri]
	if i := slices.Index(list, n); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(s.byURI, n.uri)
	} else {
		s.byURI[n.uri] = list
	}
}

// Invalidate removes every entry of a resource, named by the first three parts of a key
// (host \0 path \0 sorted query): all its variants and origins. It returns how many it removed.
func (s *Store) Invalidate(resource []byte) int {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	removed := 0
	for _, n := range slices.Clone(s.byURI[s.Hash(resource)]) {
		if string(resourceOf([]byte(n.e.Key))) == string(resource) {
			s.remove(n)
			removed++
		}
	}
	return removed
}

// resourceOf returns the resource part of a key: up to its third separator.
func resourceOf(key []byte) []byte {
	seps := 0
	for i, c := range key {
		if c == 1 || (c == 0 && seps == 2) {
			return key[:i]
		}
		if c == 0 {
			seps++
		}
	}
	return key
}

func (s *Store) pushHead(n *node) {
	n.next = s.head
	if s.head != nil {
		s.head.prev = n
	}
	s.head = n
	if s.tail == nil {
		s.tail = n
	}
}

func (s *Store) unlink(n *node) {
	if s.hand == n {
		s.hand = n.prev
	}
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		s.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		s.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

// Purge removes the entries whose path starts with pathPrefix ("" or "/": all) and returns how
// many it removed.
func (s *Store) Purge(pathPrefix string) int {
	all := pathPrefix == "" || pathPrefix == "/"
	s.listMu.Lock()
	defer s.listMu.Unlock()
	removed := 0
	for n := s.head; n != nil; {
		next := n.next
		if all || strings.HasPrefix(n.e.Path, pathPrefix) {
			s.remove(n)
			removed++
		}
		n = next
	}
	return removed
}

// Bytes is what the entries held cost against the budget.
func (s *Store) Bytes() int64 { return s.bytes.Load() }

// Len is the number of entries held.
func (s *Store) Len() int64 { return s.items.Load() }

// Evictions is the number of entries evicted to stay within the budget.
func (s *Store) Evictions() uint64 { return s.evictions.Load() }
