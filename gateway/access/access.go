// Package access is the access policy of a route: nginx's allow and deny, on the client address
// as the gateway determines it (the peer, or the rightmost untrusted X-Forwarded-For address
// when the peer is a trusted proxy). A refused client gets 403 with the gateway's JSON error.
package access

import (
	"net/netip"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// ErrForbidden is the refusal of a client address: 403.
var ErrForbidden error = forbiddenError{}

type forbiddenError struct{}

func (forbiddenError) Error() string              { return "access denied" }
func (forbiddenError) Status() (code int, _ bool) { return fasthttp.StatusForbidden, false }

var _ proxy.StatusError = forbiddenError{}

// List is a compiled access section. Immutable; safe for concurrent use.
type List struct {
	allow []netip.Prefix
	deny  []netip.Prefix
}

// New compiles c.
func New(c *config.Access) *List {
	l := &List{}
	for _, p := range c.Allow {
		l.allow = append(l.allow, p.Prefix)
	}
	for _, p := range c.Deny {
		l.deny = append(l.deny, p.Prefix)
	}
	return l
}

// Admits reports whether addr may use the route: it is in no deny prefix, and in an allow
// prefix when there are any. Deny is checked first, so a deny entry carves an exception out of
// a wider allow entry. An invalid address (no peer known) is refused when an allow list exists.
func (l *List) Admits(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range l.deny {
		if p.Contains(addr) {
			return false
		}
	}
	if len(l.allow) == 0 {
		return true
	}
	for _, p := range l.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Middleware is the factory of the access policy: nil when the route has none.
func Middleware(route *config.Route, _ *config.Config) (proxy.Middleware, error) {
	if route.Access == nil {
		return nil, nil
	}
	l := New(route.Access)
	return func(next proxy.Handler) proxy.Handler { return &handler{list: l, next: next} }, nil
}

type handler struct {
	list *List
	next proxy.Handler
}

var _ proxy.Handler = (*handler)(nil)

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	if !h.list.Admits(x.ClientIP) {
		proxy.WriteError(x, ErrForbidden)
		return
	}
	h.next.Serve(x)
}
