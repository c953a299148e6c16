package config

import (
	"fmt"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ForwardAuth asks an auth service about every request before it is forwarded, nginx's
// auth_request and Traefik's ForwardAuth. The subrequest goes to URL with the request's method,
// no body, the RequestHeaders the client sent, and X-Forwarded-Method, -Proto, -Host, -Uri and
// -For describing the original. A 2xx answer lets the request through with the ResponseHeaders
// copied onto it (client-sent copies of those are always removed first); any 3xx or 4xx answer,
// its body and headers go back to the client; a 5xx, a refused connection or a timeout is the
// auth service being down, answered per OnError.
type ForwardAuth struct {
	URL             string   `yaml:"url"`
	RequestHeaders  []string `yaml:"request_headers"`
	ResponseHeaders []string `yaml:"response_headers,omitempty"`
	Timeout         Duration `yaml:"timeout"`
	// OnError is deny (503, the default) or allow (the request goes on without the response
	// headers: fail open, for routes where availability beats the check).
	OnError string `yaml:"on_error"`
	// CacheTTL, when set, keeps a 2xx decision this long, keyed by the values of
	// RequestHeaders, so a client's repeated requests do not each ask the auth service.
	CacheTTL Duration `yaml:"cache_ttl,omitempty"`
	// CacheMaxEntries bounds the decisions kept.
	CacheMaxEntries int `yaml:"cache_max_entries,omitempty"`
}

// Defaults of forward_auth.
var (
	DefaultForwardAuthRequestHeaders = []string{"Authorization", "Cookie"}
	DefaultForwardAuthTimeout        = Duration(2 * time.Second)
	DefaultForwardAuthCacheEntries   = 10000
)

// What forward_auth does when the auth service cannot answer.
const (
	AuthOnErrorDeny  = "deny"
	AuthOnErrorAllow = "allow"
)

var authOnErrors = []string{AuthOnErrorDeny, AuthOnErrorAllow}

func (c *Config) forwardAuthDefaults(_ string, r *Route) {
	fa := r.ForwardAuth
	if fa.RequestHeaders == nil {
		fa.RequestHeaders = slices.Clone(DefaultForwardAuthRequestHeaders)
	}
	for i, h := range fa.RequestHeaders {
		fa.RequestHeaders[i] = textproto.CanonicalMIMEHeaderKey(h)
	}
	for i, h := range fa.ResponseHeaders {
		fa.ResponseHeaders[i] = textproto.CanonicalMIMEHeaderKey(h)
	}
	setDefault(&fa.Timeout, DefaultForwardAuthTimeout)
	setDefault(&fa.OnError, AuthOnErrorDeny)
	if fa.CacheTTL > 0 {
		setDefault(&fa.CacheMaxEntries, DefaultForwardAuthCacheEntries)
	}
}

func (v *validator) forwardAuth(p string, r *Route) {
	fa := r.ForwardAuth
	p += ".forward_auth"
	u, err := url.Parse(fa.URL)
	switch {
	case fa.URL == "":
		v.errorf(p+".url", "required: the auth service's URL, e.g. http://users:8081/auth/verify")
	case err != nil:
		v.errorf(p+".url", "%v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		v.errorf(p+".url", "must be an http or https URL, got %q", fa.URL)
	case u.Host == "":
		v.errorf(p+".url", "needs a host, got %q", fa.URL)
	case u.User != nil || u.Fragment != "":
		v.errorf(p+".url", "must not carry credentials or a fragment")
	}
	for i, h := range fa.RequestHeaders {
		hp := fmt.Sprintf("%s.request_headers[%d]", p, i)
		switch {
		case !validHeaderName(h):
			v.errorf(hp, "invalid header name %q", h)
		case slices.Contains(hopByHop, h) || h == "Content-Length" || h == "Host" || strings.HasPrefix(h, "X-Forwarded-"):
			v.errorf(hp, "%s is set by the gateway on the subrequest; it cannot be copied", h)
		}
	}
	for i, h := range fa.ResponseHeaders {
		hp := fmt.Sprintf("%s.response_headers[%d]", p, i)
		switch {
		case !validHeaderName(h):
			v.errorf(hp, "invalid header name %q", h)
		case slices.Contains(hopByHop, h) || h == "Content-Length" || h == "Host":
			v.errorf(hp, "%s describes a connection or a message, not an identity; it cannot be copied", h)
		}
	}
	if fa.Timeout <= 0 || fa.Timeout.D() > time.Minute {
		v.errorf(p+".timeout", "must be greater than 0 and at most 1m (every request waits this long at worst), got %s", fa.Timeout.D())
	}
	if !slices.Contains(authOnErrors, fa.OnError) {
		v.errorf(p+".on_error", "must be deny or allow, got %q%s", fa.OnError, suggest(fa.OnError, authOnErrors))
	}
	if fa.CacheTTL < 0 {
		v.errorf(p+".cache_ttl", "must be 0 (no cache) or more")
	}
	if fa.CacheTTL > 0 && len(fa.RequestHeaders) == 0 {
		v.errorf(p+".cache_ttl", "a cache is keyed by request_headers; with none, one decision would serve every client")
	}
	if fa.CacheMaxEntries < 0 || fa.CacheMaxEntries > 10_000_000 {
		v.errorf(p+".cache_max_entries", "must be between 1 and 10000000, got %d", fa.CacheMaxEntries)
	}
}
