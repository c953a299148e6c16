package ratelimit

import (
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// numShards splits a local limiter's keys: each shard has its own table and its own lock for
// inserts and evictions.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

// sampleSize is how many keys a full shard looks at to choose one to evict.
const sampleSize = 8

// minSlots is the size of a shard's first table.
const minSlots = 8

// deadTAT marks a bucket that was evicted or swept. It is never a real TAT (those are Unix
// nanoseconds), and no compare-and-swap can move a bucket away from it, so a check that found
// the bucket before it was dropped fails its swap, sees the mark and looks the key up again.
const deadTAT = math.MinInt64

// Local is a set of token buckets in this process, one per key, at most about maxKeys of them
// (the cap is split across 64 shards, each holding at least one key). A full shard makes room by
// sampling a few keys and evicting an idle one (its bucket is full: nothing is lost), or else
// the one closest to full; so a flood of new keys cannot grow memory past the cap, and it can
// at worst hand a partly used bucket a fresh start.
//
// Keys are stored as 64-bit seeded hashes: two keys share a bucket only on a hash collision,
// which an outsider cannot aim for because the seed is random. Safe for concurrent use.
//
// A check of a key that exists takes no lock and allocates nothing: it finds the key's bucket in
// its shard's table with atomic loads and moves the bucket's TAT with a compare-and-swap, retried
// when another check moved it first (GCRA needs one integer of state, so the swap is the whole
// update and the outcome is exactly what one check after another would decide). A new key, an
// eviction, a sweep and a table's growth take the shard's lock; a check that misses its key for
// a moment while the table is rearranged under it takes the lock too and looks again, so a miss
// is never a wrong answer. A bucket belongs to one key for its whole life and is never reused:
// when it is dropped it is marked dead and left to the garbage collector, which is what makes
// a swap on a bucket found without the lock safe (a reused bucket could be swapped by a check of
// the key it held before: the ABA problem).
type Local struct {
	p        atomic.Pointer[params]
	perShard atomic.Int64
	seed     maphash.Seed
	shards   [numShards]shard

	keys      atomic.Int64
	evictions atomic.Uint64
}

// bucket is one key's state. key never changes; tat is deadTAT once the bucket was dropped.
type bucket struct {
	tat atomic.Int64
	key uint64
}

// check decides one request on b, or returns false when b was dropped.
func (b *bucket) check(p *params, now int64) (Decision, bool) {
	for {
		tat := b.tat.Load()
		if tat == deadTAT {
			return Decision{}, false
		}
		next, d := p.gcra(tat, now)
		// A refused request leaves the TAT where it is: nothing to write.
		if !d.Allowed || b.tat.CompareAndSwap(tat, next) {
			return d, true
		}
	}
}

type shard struct {
	mu    sync.Mutex            // inserts, evictions, sweeps, growth
	table atomic.Pointer[table] // read without mu
	live  int                   // buckets in table, under mu
	_     [40]byte              // keep shards on separate cache lines
}

// table is an open-addressing hash table with linear probing, read without a lock and changed
// only under its shard's lock. A deletion shifts the entries after it back (no tombstones), so a
// reader can miss an entry that moves past it; readers treat a miss as "ask under the lock".
type table struct {
	slots []atomic.Pointer[bucket]
	mask  uint64
}

func newTable(n int) *table {
	return &table{slots: make([]atomic.Pointer[bucket], n), mask: uint64(n - 1)}
}

// home is where a key's probe starts; the low bits chose the shard.
func (t *table) home(h uint64) uint64 { return (h >> shardBits) & t.mask }

// find returns h's bucket, or nil when the probe met an empty slot first.
func (t *table) find(h uint64) *bucket {
	i := t.home(h)
	for range t.slots {
		b := t.slots[i].Load()
		if b == nil || b.key == h {
			return b
		}
		i = (i + 1) & t.mask
	}
	return nil
}

// insert puts b in the first empty slot of its probe. Under the shard's lock; the table has
// room (growth keeps it at most half full).
func (t *table) insert(b *bucket) {
	i := t.home(b.key)
	for t.slots[i].Load() != nil {
		i = (i + 1) & t.mask
	}
	t.slots[i].Store(b)
}

// remove takes b out of the table. Under the shard's lock.
func (t *table) remove(b *bucket) {
	i := t.home(b.key)
	for range t.slots {
		switch t.slots[i].Load() {
		case b:
			t.deleteAt(i)
			return
		case nil:
			return
		}
		i = (i + 1) & t.mask
	}
}

// deleteAt empties slot i and moves back each later entry of the run whose probe passes i
// (Knuth's algorithm R), so every probe still ends at its key or at an empty slot. An entry is
// written to its new slot before its old one is emptied: a reader may meet it twice or, when it
// passes, miss it, never find a wrong bucket.
func (t *table) deleteAt(i uint64) {
	j := i
	for {
		j = (j + 1) & t.mask
		b := t.slots[j].Load()
		if b == nil {
			t.slots[i].Store(nil)
			return
		}
		k := t.home(b.key)
		// b may fill the hole at i unless its home lies cyclically in (i, j].
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			t.slots[i].Store(b)
			i = j
		}
	}
}

// NewLocal returns a limiter admitting one request per interval with bursts of burst.
func NewLocal(interval time.Duration, burst, maxKeys int) *Local {
	l := &Local{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].table.Store(newTable(minSlots))
	}
	l.Configure(interval, burst, maxKeys)
	return l
}

// Configure changes the bucket shape and the key cap, keeping the buckets: a reload that changes
// a route's rate keeps what its clients have used.
func (l *Local) Configure(interval time.Duration, burst, maxKeys int) {
	p := newParams(interval, burst)
	l.p.Store(&p)
	l.perShard.Store(int64(max(1, (maxKeys+numShards-1)/numShards)))
}

// Allow checks one request for key now.
func (l *Local) Allow(key []byte) Decision { return l.AllowAt(key, time.Now().UnixNano()) }

// AllowAt checks one request for key at now (Unix nanoseconds).
func (l *Local) AllowAt(key []byte, now int64) Decision {
	h := maphash.Bytes(l.seed, key)
	p := l.p.Load()
	s := &l.shards[h%numShards]
	if b := s.table.Load().find(h); b != nil {
		if d, ok := b.check(p, now); ok {
			return d
		}
	}
	return l.allowLocked(s, h, p, now)
}

// allowLocked decides a request whose key was not found without the lock: new, just dropped,
// or moved while the table was rearranged.
func (l *Local) allowLocked(s *shard, h uint64, p *params, now int64) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	if b := t.find(h); b != nil {
		// Under the lock a bucket in the table is live: dropping one takes it out first.
		d, _ := b.check(p, now)
		return d
	}
	next, d := p.gcra(0, now)
	if !d.Allowed {
		return d
	}
	if int64(s.live) >= l.perShard.Load() {
		l.evict(s, now)
	}
	b := &bucket{key: h}
	b.tat.Store(next)
	if (s.live+1)*2 > len(t.slots) {
		t = s.grow(t)
	}
	t.insert(b)
	s.live++
	l.keys.Add(1)
	return d
}

// grow publishes a table twice the size holding t's buckets. Readers still probing t find the
// same buckets there.
func (s *shard) grow(t *table) *table {
	nt := newTable(2 * len(t.slots))
	for i := range t.slots {
		if b := t.slots[i].Load(); b != nil {
			nt.insert(b)
		}
	}
	s.table.Store(nt)
	return nt
}

// evict removes keys from a full shard until it has room: idle keys among a sample first,
// otherwise the sampled key with the earliest TAT. The sample starts at a random slot. Under
// the shard's lock.
func (l *Local) evict(s *shard, now int64) {
	t := s.table.Load()
	var sample [sampleSize]*bucket
	for int64(s.live) >= l.perShard.Load() && s.live > 0 {
		n := 0
		i := rand.Uint64() & t.mask
		for range t.slots {
			if b := t.slots[i].Load(); b != nil {
				sample[n] = b
				if n++; n == sampleSize {
					break
				}
			}
			i = (i + 1) & t.mask
		}
		removed := 0
		var victim *bucket
		oldest := int64(math.MaxInt64)
		for _, b := range sample[:n] {
			tat := b.tat.Load()
			// An idle bucket is dropped only if no check moved it meanwhile.
			if tat <= now && b.tat.CompareAndSwap(tat, deadTAT) {
				t.remove(b)
				removed++
			} else if tat < oldest {
				victim, oldest = b, tat
			}
		}
		if removed == 0 && victim != nil {
			victim.tat.Store(deadTAT)
			t.remove(victim)
			removed = 1
		}
		s.live -= removed
		l.keys.Add(-int64(removed))
		l.evictions.Add(uint64(removed))
		if removed == 0 {
			return
		}
	}
}

// Sweep drops every idle key (a full bucket) and returns how many it dropped.
func (l *Local) Sweep(now int64) int {
	dropped := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		t := s.table.Load()
		for j := uint64(0); j < uint64(len(t.slots)); {
			b := t.slots[j].Load()
			if b != nil {
				if tat := b.tat.Load(); tat <= now && b.tat.CompareAndSwap(tat, deadTAT) {
					// The entry shifted into slot j, if any, has not been looked at yet.
					t.deleteAt(j)
					s.live--
					dropped++
					continue
				}
			}
			j++
		}
		s.mu.Unlock()
	}
	l.keys.Add(-int64(dropped))
	return dropped
}

// Keys is the number of buckets held.
func (l *Local) Keys() int64 { return l.keys.Load() }

// Evictions is the number of buckets dropped to stay under the cap.
func (l *Local) Evictions() uint64 { return l.evictions.Load() }
