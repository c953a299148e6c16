package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// KeySetOptions configure a KeySet.
type KeySetOptions struct {
	// Refresh is how often the set is fetched again in the background, so a key the issuer
	// withdrew stops being trusted.
	Refresh time.Duration
	// MinRefresh is the least time between two fetches once keys are known: however many
	// tokens with unknown kids arrive, the endpoint is asked at most once per MinRefresh.
	MinRefresh time.Duration
	// Timeout bounds one fetch, and how long a request waits for a fetch it asked for.
	Timeout time.Duration
	// RetryWithoutKeys is the least time between fetches until the first one succeeds (1 s).
	RetryWithoutKeys time.Duration
	Client           *http.Client // a client with Timeout when nil
	Logger           *slog.Logger
}

// maxJWKSBytes bounds a JWK Set document.
const maxJWKSBytes = 1 << 20

// KeySet is a cached JWK Set fetched from a URL by one goroutine that its owner's context stops.
// Requests read the current keys with one atomic load; a request that meets an unknown kid asks
// the goroutine for a fetch (subject to MinRefresh) and waits for it at most Timeout. A failed
// fetch keeps the last good keys. Safe for concurrent use.
type KeySet struct {
	url  string
	opts KeySetOptions

	keys        atomic.Pointer[keyMap] // nil until a fetch succeeds
	lastAttempt atomic.Int64           // unix nanoseconds when the last fetch started
	fetching    atomic.Bool
	fetches     atomic.Int64
	// round is closed when the fetch in progress, or the next one, ends.
	round atomic.Pointer[chan struct{}]
	kick  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{}
}

// NewKeySet starts fetching url in a goroutine that runs until ctx ends or Stop is called.
func NewKeySet(ctx context.Context, url string, opts KeySetOptions) *KeySet {
	if opts.RetryWithoutKeys == 0 {
		opts.RetryWithoutKeys = time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	k := &KeySet{url: url, opts: opts, kick: make(chan struct{}, 1), exited: make(chan struct{})}
	k.ctx, k.cancel = context.WithCancel(ctx)
	first := make(chan struct{})
	k.round.Store(&first)
	k.fetching.Store(true) // the first fetch starts at once; requests wait for it
	go k.run()
	return k
}

// Stop ends the goroutine and waits for it. The keys already fetched stay usable.
func (k *KeySet) Stop() {
	k.cancel()
	<-k.exited
}

// Fetches returns how many fetches were attempted.
func (k *KeySet) Fetches() int64 { return k.fetches.Load() }

// URL returns where the keys come from.
func (k *KeySet) URL() string { return k.url }

// HasKeys reports whether a fetch has succeeded.
func (k *KeySet) HasKeys() bool { return k.keys.Load() != nil }

func (k *KeySet) lookup(kid []byte) (publicKey, bool) {
	m := k.keys.Load()
	if m == nil {
		return publicKey{}, false
	}
	pk, ok := (*m)[string(kid)]
	return pk, ok
}

// refreshed asks for a fetch because kid is unknown and waits for it. It returns false at once
// when the rate limit forbids a fetch and none is running.
func (k *KeySet) refreshed() bool {
	round := *k.round.Load()
	if !k.fetching.Load() {
		interval := k.opts.MinRefresh
		if !k.HasKeys() {
			interval = k.opts.RetryWithoutKeys
		}
		if time.Now().UnixNano()-k.lastAttempt.Load() < int64(interval) {
			return false
		}
		select {
		case k.kick <- struct{}{}:
		default: // a fetch is already asked for
		}
	}
	t := time.NewTimer(k.opts.Timeout)
	defer t.Stop()
	select {
	case <-round:
		return true
	case <-t.C:
	case <-k.ctx.Done():
	}
	return false
}

func (k *KeySet) run() {
	defer close(k.exited)
	backoff := k.opts.RetryWithoutKeys
	for {
		k.fetch()
		wait := k.opts.Refresh
		if !k.HasKeys() {
			wait = backoff
			backoff = min(backoff*2, k.opts.MinRefresh)
		} else {
			backoff = k.opts.RetryWithoutKeys
		}
		t := time.NewTimer(wait)
	idle:
		for {
			select {
			case <-k.ctx.Done():
				t.Stop()
				return
			case <-t.C:
				break idle
			case <-k.kick:
				// The request side checks the rate limit before asking; checked again here
				// because a request may have asked while the last fetch was running.
				interval := k.opts.MinRefresh
				if !k.HasKeys() {
					interval = k.opts.RetryWithoutKeys
				}
				if time.Now().UnixNano()-k.lastAttempt.Load() >= int64(interval) {
					t.Stop()
					break idle
				}
			}
		}
	}
}

func (k *KeySet) fetch() {
	k.fetching.Store(true)
	k.lastAttempt.Store(time.Now().UnixNano())
	k.fetches.Add(1)
	round := k.round.Load()
	keys, err := k.get()
	if err != nil {
		k.opts.Logger.Warn("jwks fetch failed; keeping the last good keys", "url", k.url, "error", err.Error(), "have_keys", k.HasKeys())
	} else {
		k.keys.Store(&keys)
	}
	next := make(chan struct{})
	k.round.Store(&next)
	k.fetching.Store(false)
	close(*round)
}

func (k *KeySet) get() (keyMap, error) {
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: %s answered %d", k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks at %s is over %d bytes", k.url, maxJWKSBytes)
	}
	keys, skipped, err := parseJWKS(body)
	for _, s := range skipped {
		k.opts.Logger.Debug("jwks key skipped", "url", k.url, "reason", s)
	}
	if err != nil {
		return nil, fmt.Errorf("jwks at %s: %w", k.url, err)
	}
	return keys, nil
}
