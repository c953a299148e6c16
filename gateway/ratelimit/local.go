package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// numShards splits a local limiter's keys so concurrent checks rarely share a lock.
const numShards = 64

// sampleSize is how many keys a full shard looks at to choose one to evict.
const sampleSize = 8

// Local is a set of token buckets in this process, one per key, at most about maxKeys of them
// (the cap is split across 64 shards, each holding at least one key). A full shard makes room by
// sampling a few keys and evicting an idle one (its bucket is full: nothing is lost), or else
// the one closest to full; so a flood of new keys cannot grow memory past the cap, and it can
// at worst hand a partly used bucket a fresh start.
//
// Keys are stored as 64-bit seeded hashes: two keys share a bucket only on a hash collision,
// which an outsider cannot aim for because the seed is random. Safe for concurrent use; a check
// takes one shard mutex for a map lookup and an integer update, and allocates nothing once the
// key exists.
type Local struct {
	p        atomic.Pointer[params]
	perShard atomic.Int64
	seed     maphash.Seed
	shards   [numShards]shard

	keys      atomic.Int64
	evictions atomic.Uint64
}

type shard struct {
	mu  sync.Mutex
	tat map[uint64]int64
	_   [40]byte // keep shards on separate cache lines
}

// NewLocal returns a limiter admitting one request per interval with bursts of burst.
func NewLocal(interval time.Duration, burst, maxKeys int) *Local {
	l := &Local{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tat = map[uint64]int64{}
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
	s.mu.Lock()
	tat, ok := s.tat[h]
	if !ok && int64(len(s.tat)) >= l.perShard.Load() {
		l.evict(s, now)
	}
	next, d := p.gcra(tat, now)
	if d.Allowed || ok {
		s.tat[h] = next
		if !ok {
			l.keys.Add(1)
		}
	}
	s.mu.Unlock()
	return d
}

// evict removes keys from a full shard until it has room: idle keys among a sample first,
// otherwise the sampled key with the earliest TAT. Go's map iteration starts at a random place,
// so the sample is spread over the shard.
func (l *Local) evict(s *shard, now int64) {
	for int64(len(s.tat)) >= l.perShard.Load() {
		var victim uint64
		oldest, n, removed := int64(1<<63-1), 0, 0
		for k, tat := range s.tat {
			if tat <= now {
				delete(s.tat, k)
				removed++
			} else if tat < oldest {
				victim, oldest = k, tat
			}
			if n++; n == sampleSize {
				break
			}
		}
		if removed == 0 && oldest != 1<<63-1 {
			delete(s.tat, victim)
			removed = 1
		}
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
		for k, tat := range s.tat {
			if tat <= now {
				delete(s.tat, k)
				dropped++
			}
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
