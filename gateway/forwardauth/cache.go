package forwardauth

import (
	"sync"
	"time"
)

// decisionCache keeps the auth service's 2xx answers for a while, keyed by the credential, with
// the identity headers it gave. Only allowing answers are kept: a refusal is asked again, so a
// client that just logged in is not held to an old 401. Safe for concurrent use; a lookup takes
// one mutex, held for a map read.
type decisionCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]decision
}

type decision struct {
	values  [][]byte // the configured response headers' values, nil where absent
	expires time.Time
}

func newDecisionCache(ttl time.Duration, max int) *decisionCache {
	return &decisionCache{ttl: ttl, max: max, entries: map[string]decision{}}
}

func (c *decisionCache) get(key []byte, now time.Time) ([][]byte, bool) {
	c.mu.Lock()
	d, ok := c.entries[string(key)]
	c.mu.Unlock()
	if !ok || !now.Before(d.expires) {
		return nil, false
	}
	return d.values, true
}

func (c *decisionCache) put(key []byte, values [][]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, d := range c.entries {
			if !now.Before(d.expires) {
				delete(c.entries, k)
			}
		}
		// Still full of live entries: make room by dropping arbitrary ones (map order); the
		// cost is one more question to the auth service for those clients.
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[string(key)] = decision{values: values, expires: now.Add(c.ttl)}
}
