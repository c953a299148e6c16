// Package auth is the gateway's token policy: it verifies JWTs at the edge (keys from a JWKS URL
// or an HS256 secret), refuses requests without a valid token on routes that require one, and
// forwards chosen claims upstream as headers, always removing client-supplied copies first.
//
// A Registry owns the state that outlives one configuration: the JWKS key caches and their
// fetcher goroutines. A reload that keeps the jwt section keeps the verifier and its keys.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// Registry builds the auth policy of routes and keeps JWKS caches across reloads. Its methods run
// when snapshots are built and committed (under the gateway's reload lock); the policies it
// returns are safe for concurrent use.
type Registry struct {
	ctx    context.Context
	logger *slog.Logger
	client *http.Client

	mu        sync.Mutex
	keySets   map[keySetKey]*KeySet
	verifiers map[string]*Verifier // by jwtKey
}

// keySetKey is what a key cache depends on: a reload changing only issuer, audience, leeway or
// algorithms keeps the fetched keys.
type keySetKey struct {
	url                          string
	refresh, minRefresh, timeout time.Duration
}

// NewRegistry returns a Registry whose fetchers stop when ctx ends. client fetches JWKS documents
// (nil: a client bounded by jwt.jwks_timeout).
func NewRegistry(ctx context.Context, logger *slog.Logger, client *http.Client) *Registry {
	if logger == nil {
		logger = slog.Default()
	}
	return &Registry{ctx: ctx, logger: logger, client: client, keySets: map[keySetKey]*KeySet{}, verifiers: map[string]*Verifier{}}
}

// Middleware builds the auth policy of route, or nil when the route has none. It has the shape
// of a policies.Row Middleware.
func (m *Registry) Middleware(route *config.Route, cfg *config.Config) (proxy.Middleware, error) {
	a := route.Auth
	if a == nil {
		return nil, nil
	}
	if cfg.JWT == nil {
		return nil, fmt.Errorf("auth needs the jwt section")
	}
	v, err := m.verifier(cfg.JWT)
	if err != nil {
		return nil, err
	}
	p := &policy{verifier: v, required: a.JWT == config.JWTRequired}
	for _, claim := range slices.Sorted(maps.Keys(a.ForwardClaims)) {
		header := []byte(http.CanonicalHeaderKey(a.ForwardClaims[claim]))
		p.forward = append(p.forward, forwardedClaim{claim: claim, header: header})
	}
	return func(next proxy.Handler) proxy.Handler { return &handler{policy: p, next: next} }, nil
}

// Commit stops the key caches and forgets the verifiers that cfg, now live, does not use.
func (m *Registry) Commit(cfg *config.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var live keySetKey
	var liveJWT string
	if cfg.JWT != nil {
		live, liveJWT = keySetKeyOf(cfg.JWT), jwtKey(cfg.JWT)
	}
	for k, ks := range m.keySets {
		if k != live {
			ks.Stop()
			delete(m.keySets, k)
		}
	}
	for k := range m.verifiers {
		if k != liveJWT {
			delete(m.verifiers, k)
		}
	}
}

// Close stops every key cache.
func (m *Registry) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, ks := range m.keySets {
		ks.Stop()
		delete(m.keySets, k)
	}
}

// KeySet returns the live key cache for url, or nil (for tests and the admin API).
func (m *Registry) KeySet(url string) *KeySet {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, ks := range m.keySets {
		if k.url == url {
			return ks
		}
	}
	return nil
}

func keySetKeyOf(j *config.JWT) keySetKey {
	if j.JWKSURL == "" {
		return keySetKey{}
	}
	return keySetKey{url: j.JWKSURL, refresh: j.JWKSRefresh.D(), minRefresh: j.JWKSMinRefresh.D(), timeout: j.JWKSTimeout.D()}
}

// jwtKey identifies a jwt section, secret included; it is never printed.
func jwtKey(j *config.JWT) string {
	return fmt.Sprintf("%q %q %q %q %q %d %d %d %d", j.JWKSURL, j.Secret.Reveal(), j.Issuer, j.Audience,
		j.Algorithms, j.Leeway, j.JWKSRefresh, j.JWKSMinRefresh, j.JWKSTimeout)
}

func (m *Registry) verifier(j *config.JWT) (*Verifier, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := jwtKey(j)
	if v, ok := m.verifiers[key]; ok {
		return v, nil
	}
	cfg := VerifierConfig{Algorithms: j.Algorithms, Issuer: j.Issuer, Audience: j.Audience, Leeway: j.Leeway.D()}
	if j.Secret != "" {
		cfg.Secret = []byte(j.Secret.Reveal())
	} else {
		ksKey := keySetKeyOf(j)
		ks := m.keySets[ksKey]
		if ks == nil {
			ks = NewKeySet(m.ctx, j.JWKSURL, KeySetOptions{
				Refresh: j.JWKSRefresh.D(), MinRefresh: j.JWKSMinRefresh.D(), Timeout: j.JWKSTimeout.D(),
				Client: m.client, Logger: m.logger,
			})
			m.keySets[ksKey] = ks
		}
		cfg.Keys = ks
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	m.verifiers[key] = v
	return v, nil
}

type forwardedClaim struct {
	claim  string
	header []byte // canonical
}

type policy struct {
	verifier *Verifier
	required bool
	forward  []forwardedClaim
}

type handler struct {
	*policy
	next proxy.Handler
}

var (
	hWWWAuthenticate = []byte("WWW-Authenticate")
	vBearer          = []byte("Bearer")
	vBearerInvalid   = []byte(`Bearer error="invalid_token"`)
)

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	hdr := &x.Ctx.Request.Header
	// Whatever happens next, the upstream never sees identity headers the client wrote.
	for i := range h.forward {
		hdr.DelBytes(h.forward[i].header)
	}
	authz := hdr.PeekAll(fasthttp.HeaderAuthorization)
	var token []byte
	var present bool
	switch {
	case len(authz) > 1:
		fail(x, ErrDuplicateHeader)
		return
	case len(authz) == 1 && len(authz[0]) > MaxAuthorizationBytes:
		fail(x, ErrHeaderTooLarge)
		return
	case len(authz) == 1:
		// Another scheme (Basic, ...) is not a token: the request is anonymous here.
		token, present = BearerToken(authz[0])
	}
	if !present {
		if h.required {
			fail(x, ErrMissingToken)
			return
		}
		h.next.Serve(x)
		return
	}
	t := AcquireToken()
	defer ReleaseToken(t)
	if err := h.verifier.Verify(token, time.Now(), t); err != nil {
		e, ok := err.(*Error)
		if !ok {
			e = ErrMalformed
		}
		fail(x, e)
		return
	}
	for i := range h.forward {
		f := &h.forward[i]
		if v, ok := t.ClaimBytes(f.claim); ok {
			if !headerValueSafe(v) {
				fail(x, ErrUnforwardableClaim)
				return
			}
			hdr.SetBytesKV(f.header, v)
		}
	}
	x.Claims = t
	h.next.Serve(x)
	x.Claims = nil
}

// headerValueSafe reports whether v can be sent as a header value as it is: no control
// characters (tab aside), no leading or trailing space that would be trimmed away.
func headerValueSafe(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return len(v) == 0 || (v[0] != ' ' && v[0] != '\t' && v[len(v)-1] != ' ' && v[len(v)-1] != '\t')
}

func fail(x *proxy.Exchange, err *Error) {
	proxy.WriteError(x, err)
	switch {
	case err.Missing:
		x.Ctx.Response.Header.SetBytesKV(hWWWAuthenticate, vBearer)
	case err.status == http.StatusUnauthorized:
		x.Ctx.Response.Header.SetBytesKV(hWWWAuthenticate, vBearerInvalid)
	}
}
