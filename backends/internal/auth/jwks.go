package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// JWKSOptions tunes a JWKSClient. Zero fields take the defaults.
type JWKSOptions struct {
	// MinRefreshInterval is the least time between two fetches, successful or not (30 s).
	MinRefreshInterval time.Duration
	// RetryWithoutKeys replaces MinRefreshInterval while no fetch has succeeded yet (1 s): a
	// service that starts before the users service must not reject every token for 30 s.
	RetryWithoutKeys time.Duration
	// Timeout bounds one fetch (5 s).
	Timeout time.Duration
	// HTTPClient fetches the set; a client with Timeout when nil.
	HTTPClient *http.Client
	Logger     *slog.Logger     // slog.Default() when nil
	Now        func() time.Time // time.Now when nil
}

// JWKSClient is a KeySource backed by a remote JWK Set (the users service's
// /.well-known/jwks.json). Keys are fetched on first use and cached. A kid that is not cached
// triggers a refetch, at most once per MinRefreshInterval however many requests ask, so a flood
// of tokens with made-up kids cannot turn into a flood of fetches. A failed fetch keeps the last
// good keys. Until a first fetch succeeds, fetches may happen once per RetryWithoutKeys
// instead. Safe for concurrent use.
type JWKSClient struct {
	url  string
	opts JWKSOptions

	fetchMu sync.Mutex // one fetch at a time; waiters then see its result

	mu        sync.RWMutex
	keys      map[string]ed25519.PublicKey
	lastFetch time.Time // last attempt, successful or not; zero before the first
	fetches   int
}

var _ KeySource = (*JWKSClient)(nil)

// NewJWKSClient returns a client for the JWK Set at url. It fetches nothing until asked for a key.
func NewJWKSClient(url string, opts JWKSOptions) *JWKSClient {
	if opts.MinRefreshInterval == 0 {
		opts.MinRefreshInterval = 30 * time.Second
	}
	if opts.RetryWithoutKeys == 0 {
		opts.RetryWithoutKeys = time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &JWKSClient{url: url, opts: opts}
}

// PublicKey returns the key for kid, refetching the set when kid is unknown and the last fetch
// is at least MinRefreshInterval old.
func (c *JWKSClient) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	if k, ok := c.cached(kid); ok {
		return k, nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	if k, ok := c.cached(kid); ok {
		return k, nil
	}
	c.mu.RLock()
	last, interval := c.lastFetch, c.opts.MinRefreshInterval
	if c.keys == nil {
		interval = c.opts.RetryWithoutKeys
	}
	c.mu.RUnlock()
	if since := c.opts.Now().Sub(last); !last.IsZero() && since < interval {
		return nil, fmt.Errorf("%w: kid %q (next fetch of %s allowed in %s)", ErrUnknownKey, kid, c.url,
			(interval - since).Round(100*time.Millisecond))
	}
	if err := c.refresh(ctx); err != nil {
		return nil, fmt.Errorf("%w: kid %q: %w", ErrUnknownKey, kid, err)
	}
	if k, ok := c.cached(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q not in %s", ErrUnknownKey, kid, c.url)
}

// Refresh fetches the set now, regardless of MinRefreshInterval; services call it at start so
// the first request does not wait. A failure keeps the cached keys.
func (c *JWKSClient) Refresh(ctx context.Context) error {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	return c.refresh(ctx)
}

// Fetches returns how many fetches were attempted, for tests and metrics.
func (c *JWKSClient) Fetches() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fetches
}

func (c *JWKSClient) cached(kid string) (ed25519.PublicKey, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[kid]
	return k, ok
}

// refresh fetches the set; the caller holds fetchMu.
func (c *JWKSClient) refresh(ctx context.Context) error {
	c.mu.Lock()
	c.lastFetch = c.opts.Now()
	c.fetches++
	c.mu.Unlock()
	keys, err := c.fetch(ctx)
	if err != nil {
		c.opts.Logger.Warn("jwks fetch failed; keeping the last good keys", "url", c.url, "error", err.Error())
		return err
	}
	c.mu.Lock()
	c.keys = keys
	c.mu.Unlock()
	return nil
}

func (c *JWKSClient) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: %s answered %d", c.url, resp.StatusCode)
	}
	var set JWKSet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		pub, err := k.Ed25519()
		if err != nil || k.Kid == "" {
			continue // other key types and kid-less keys are not for us
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks at %s holds no Ed25519 signing key", c.url)
	}
	return keys, nil
}
