// Package static serves a route from files, in place of an upstream: the storefront's built
// bundle, with the cache headers a bundler's output wants (content-hashed assets cached for a
// year, everything else revalidated), a single-page-app fallback, ETag and Last-Modified with
// 304, HEAD and single byte ranges.
//
// Files are served by fasthttp.FS from the route's root. The file path is the gateway's one
// normalised request path (after strip_prefix), never the raw one: dot segments are already
// gone, a path with an encoded slash or backslash is refused, and fasthttp.FS resolves what is
// left with os.Root, so neither a path nor a symbolic link can reach outside the root.
//
// A Registry owns the file servers across reloads: each keeps a cache of open files cleaned by
// a goroutine of its own, stopped when no live configuration uses that root any more.
package static

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/valyala/fasthttp"
)

// Cache-Control values.
var (
	ImmutableCacheControl  = []byte("public, max-age=31536000, immutable")
	RevalidateCacheControl = []byte("no-cache")
)

// Error is a static route's own refusal.
type Error struct {
	msg  string
	code int
}

func (e *Error) Error() string { return e.msg }

// Status implements proxy.StatusError.
func (e *Error) Status() (code int, closeConn bool) { return e.code, false }

// Refusals.
var (
	ErrNotFound         = &Error{"file not found", fasthttp.StatusNotFound}
	ErrMethodNotAllowed = &Error{"a static route serves GET and HEAD", fasthttp.StatusMethodNotAllowed}
)

// Registry builds the handlers of static routes and owns their file servers. Its methods run
// when snapshots are built and committed; the handlers are safe for concurrent use.
type Registry struct {
	logger *slog.Logger

	mu      sync.Mutex
	servers map[fsKey]*fileServer
}

type fsKey struct{ root, index string }

type fileServer struct {
	serve fasthttp.RequestHandler
	stop  chan struct{} // closing it stops fasthttp.FS's cache cleaner
}

// NewRegistry returns a Registry.
func NewRegistry(logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.Default()
	}
	return &Registry{logger: logger, servers: map[fsKey]*fileServer{}}
}

// Handler builds the last handler of a static route. It has the shape of
// a policies.Row Terminal. The root must be a directory, and the SPA fallback a file in it.
func (m *Registry) Handler(route *config.Route, _ *config.Config) (proxy.Handler, error) {
	s := route.Static
	if s == nil {
		return nil, fmt.Errorf("not a static route")
	}
	root, err := filepath.Abs(s.Root)
	if err != nil {
		return nil, fmt.Errorf("static root %q: %w", s.Root, err)
	}
	if st, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("static root: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("static root %s is not a directory", root)
	}
	h := &handler{}
	if s.SPAFallback != "" {
		r, err := os.OpenRoot(root)
		if err != nil {
			return nil, fmt.Errorf("static root: %w", err)
		}
		st, err := r.Stat(s.SPAFallback)
		r.Close()
		if err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("static spa_fallback %q is not a file under %s", s.SPAFallback, root)
		}
		h.fallback = []byte("/" + filepath.ToSlash(s.SPAFallback))
	}
	if route.StripPrefix != "" && route.StripPrefix != "/" {
		h.strip = []byte(config.CleanPrefix(route.StripPrefix))
	}
	for _, p := range s.Immutable {
		h.immutable = append(h.immutable, []byte(p))
	}
	h.fs = m.server(fsKey{root: root, index: s.Index}).serve
	return h, nil
}

func (m *Registry) server(k fsKey) *fileServer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.servers[k]; ok {
		return s
	}
	stop := make(chan struct{})
	fs := &fasthttp.FS{
		Root:            k.root,
		IndexNames:      []string{k.index},
		AcceptByteRange: true,
		GenerateETag:    true,
		CleanStop:       stop,
	}
	s := &fileServer{serve: fs.NewRequestHandler(), stop: stop}
	m.servers[k] = s
	return s
}

// Commit stops the file servers of roots that cfg, now live, does not serve.
func (m *Registry) Commit(cfg *config.Config) {
	live := map[fsKey]bool{}
	for _, r := range cfg.Routes {
		if r.Static != nil {
			if root, err := filepath.Abs(r.Static.Root); err == nil {
				live[fsKey{root: root, index: r.Static.Index}] = true
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.servers {
		if !live[k] {
			close(s.stop) // requests still running on the old snapshot keep working, uncached
			delete(m.servers, k)
			m.logger.Debug("static file server stopped", "root", k.root)
		}
	}
}

// Close stops every file server.
func (m *Registry) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.servers {
		close(s.stop)
		delete(m.servers, k)
	}
}

// Servers returns how many file servers are running (for tests).
func (m *Registry) Servers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.servers)
}

type handler struct {
	fs        fasthttp.RequestHandler
	strip     []byte
	fallback  []byte
	immutable [][]byte
}

var (
	hCacheControl = []byte(fasthttp.HeaderCacheControl)
	hLocation     = []byte(fasthttp.HeaderLocation)
	hAllow        = []byte(fasthttp.HeaderAllow)
	vAllow        = []byte("GET, HEAD")
	slash         = []byte("/")
)

const (
	getMethod  = protocol.MethodGet
	headMethod = protocol.MethodHead
)

// Serve implements proxy.Handler.
func (h *handler) Serve(x *proxy.Exchange) {
	if x.Method != getMethod && x.Method != headMethod {
		proxy.WriteError(x, ErrMethodNotAllowed)
		x.Ctx.Response.Header.SetBytesKV(hAllow, vAllow)
		return
	}
	path := x.Path
	if len(h.strip) > 0 && bytes.HasPrefix(path, h.strip) {
		path = path[len(h.strip):]
	}
	if len(path) == 0 {
		path = slash
	}
	// The normalised path keeps reserved characters percent-encoded. fasthttp.FS decodes
	// them; an encoded slash or backslash would then split a segment the gateway matched as
	// one, so such paths name no file.
	if hasEncodedSeparator(path) || path[0] != '/' {
		proxy.WriteError(x, ErrNotFound)
		return
	}
	immutable := h.isImmutable(path)
	ctx := x.Ctx
	ctx.URI().SetPathBytes(path)
	h.fs(ctx)

	switch code := ctx.Response.StatusCode(); {
	case code == fasthttp.StatusNotFound || code == fasthttp.StatusForbidden:
		if len(h.fallback) == 0 || immutable {
			// A hashed asset that is not there is a broken deploy or a stale page: a 404, not
			// the app's HTML under a JavaScript name.
			proxy.WriteError(x, ErrNotFound)
			return
		}
		ctx.Response.Reset()
		ctx.URI().SetPathBytes(h.fallback)
		h.fs(ctx)
		if ctx.Response.StatusCode() == fasthttp.StatusNotFound {
			proxy.WriteError(x, ErrNotFound) // the fallback was removed after the build
			return
		}
	case code == fasthttp.StatusFound:
		// fasthttp.FS redirects a directory to its slash form, built from the path it was
		// given; the client asked for x.Path (before strip_prefix).
		loc := make([]byte, 0, len(x.Path)+1+len(x.Query)+1)
		loc = append(append(loc, x.Path...), '/')
		if len(x.Query) > 0 {
			loc = append(append(loc, '?'), x.Query...)
		}
		ctx.Response.Header.SetBytesKV(hLocation, loc)
		ctx.Response.ResetBody()
		return
	case code >= 400:
		return
	}
	if immutable {
		ctx.Response.Header.SetBytesKV(hCacheControl, ImmutableCacheControl)
	} else {
		ctx.Response.Header.SetBytesKV(hCacheControl, RevalidateCacheControl)
	}
}

func (h *handler) isImmutable(path []byte) bool {
	for _, p := range h.immutable {
		if bytes.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func hasEncodedSeparator(p []byte) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] == '%' && (p[i+1] == '2' && (p[i+2] == 'F' || p[i+2] == 'f') || p[i+1] == '5' && (p[i+2] == 'C' || p[i+2] == 'c')) {
			return true
		}
	}
	return bytes.IndexByte(p, '\\') >= 0
}
