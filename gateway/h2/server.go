// x/net/http2's Server is deprecated in favour of net/http's own HTTP/2, but net/http serves
// only whole listeners: it has no entry for one connection that the listener demux already
// accepted, handshaken and classified, with the per-connection handler (client address, TLS
// state) and the generation switch this file needs. Moving to http.Server means feeding it a
// listener of demultiplexed connections; until then the deprecated API is used on purpose.
//lint:file-ignore SA1019 ServeConn is the only per-connection HTTP/2 entry (see above)

package h2

import (
	"context"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// Settings are what an HTTP/2 connection is opened with (server.http2 and the server limits).
// Comparable: a reload that changes them starts a new generation.
type Settings struct {
	MaxConcurrentStreams uint32
	// MaxHeaderListBytes bounds the decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE); the
	// head rebuilt from it must also fit in MaxHeaderListBytes as HTTP/1.1 (server.max_header_bytes
	// by default), as an HTTP/1.1 head must: both give 431.
	MaxHeaderListBytes int
	IdleTimeout        time.Duration
	// ReadTimeout bounds a stream's request (its body included); WriteTimeout its response, and
	// also how long one write to the connection may make no progress.
	ReadTimeout                  time.Duration
	WriteTimeout                 time.Duration
	MaxUploadBufferPerStream     int32
	MaxUploadBufferPerConnection int32
	// Engine is the HTTP/2 implementation that serves the connections.
	Engine Engine
}

// Engine is an HTTP/2 implementation (server.http2.engine).
type Engine uint8

const (
	// EngineNative is the gateway's own frame layer (native.go): no goroutine, http.Request or
	// header map between a stream and the fasthttp request, responses of many streams in one
	// write.
	EngineNative Engine = iota
	// EngineXNet is golang.org/x/net/http2's server behind a bridge to fasthttp (stream.go).
	EngineXNet
)

// Handler is what serves a stream once it is a fasthttp request: the same handler the listener's
// fasthttp server calls, and the handler for a request head that does not parse.
type Handler struct {
	Serve      fasthttp.RequestHandler
	ParseError func(ctx *fasthttp.RequestCtx, err error)
	Logger     fasthttp.Logger
}

// Server serves HTTP/2 connections of one listener. Its settings follow reloads: connections
// opened after Store use the new ones, and connections opened before are sent a graceful
// GOAWAY, so their streams finish and clients reconnect. Safe for concurrent use.
type Server struct {
	handler Handler
	gen     atomic.Pointer[generation]

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closing  bool
	drained  chan struct{} // closed when closing and conns is empty
	accepted atomic.Uint64
	streams  [NumStreamOutcomes]atomic.Uint64
}

// generation is one set of settings and the x/net/http2 server built from them. base carries
// the per-stream timeouts and header limit, and its Shutdown sends GOAWAY to the connections
// served with it.
type generation struct {
	settings Settings
	h2       *http2.Server
	base     *http.Server

	// The native engine's connections, to send them GOAWAY when the generation ends.
	nmu    sync.Mutex
	nconns map[*nconn]struct{}
	ended  bool
}

// register adds a native connection; false when the generation has ended (the connection is
// then told to go away at once).
func (g *generation) register(c *nconn) bool {
	g.nmu.Lock()
	defer g.nmu.Unlock()
	if g.ended {
		return false
	}
	if g.nconns == nil {
		g.nconns = map[*nconn]struct{}{}
	}
	g.nconns[c] = struct{}{}
	return true
}

func (g *generation) unregister(c *nconn) {
	g.nmu.Lock()
	defer g.nmu.Unlock()
	delete(g.nconns, c)
}

// end sends every connection of the generation a graceful GOAWAY: x/net's through base, the
// native engine's directly. Their streams in flight finish; then they close.
func (g *generation) end(ctx context.Context) {
	_ = g.base.Shutdown(ctx)
	g.nmu.Lock()
	g.ended = true
	conns := make([]*nconn, 0, len(g.nconns))
	for c := range g.nconns {
		conns = append(conns, c)
	}
	g.nmu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.goAwayLocked(http2.ErrCodeNo)
		c.mu.Unlock()
		// Each on its own goroutine, which ends with the write: a client that does not read
		// would otherwise hold the reload (or the shutdown) for write_timeout per connection.
		go c.flush()
	}
}

// NewServer returns a server serving streams with h.
func NewServer(s Settings, h Handler) *Server {
	srv := &Server{handler: h, conns: map[net.Conn]struct{}{}, drained: make(chan struct{})}
	srv.gen.Store(newGeneration(s, h.Logger, srv.countError))
	return srv
}

func newGeneration(s Settings, logger fasthttp.Logger, countError func(string)) *generation {
	base := &http.Server{
		// No ReadTimeout here: x/net/http2 would arm a timer and clear the connection's read
		// deadline for every stream, a GET's too, whose request is whole with its HEADERS. The
		// bridge arms the same timer only for a stream with a body (connHandler.ServeHTTP).
		WriteTimeout:   s.WriteTimeout,
		IdleTimeout:    s.IdleTimeout,
		MaxHeaderBytes: s.MaxHeaderListBytes,
		ErrorLog:       log.New(logWriter{logger}, "", 0),
	}
	h2 := &http2.Server{
		MaxConcurrentStreams:         s.MaxConcurrentStreams,
		IdleTimeout:                  s.IdleTimeout,
		MaxUploadBufferPerStream:     s.MaxUploadBufferPerStream,
		MaxUploadBufferPerConnection: s.MaxUploadBufferPerConnection,
		// HTTP/2's default frame size (nginx's too): a larger frame from a client is a
		// FRAME_SIZE_ERROR, and no single frame makes the server buffer more than 16 KiB.
		MaxReadFrameSize: 16 << 10,
		// A client that stops reading stalls its connection's writes; without a bound it would
		// hold the connection and every stream on it forever.
		WriteByteTimeout: s.WriteTimeout,
		// Responses are sent in the order they are ready, as nginx does. x/net's default (here
		// round-robin over the streams, or RFC 9218 priorities where clients may set them)
		// costs the connection's loop work on every frame, which a proxy of small responses
		// has no use for.
		NewWriteScheduler: func() http2.WriteScheduler { return http2.NewRandomWriteScheduler() },
		CountError:        countError,
	}
	// ConfigureServer links the two: base.Shutdown sends GOAWAY to h2's connections. It only
	// fails for TLS settings the gateway does not let base have.
	if err := http2.ConfigureServer(base, h2); err != nil {
		panic("h2: configure server: " + err.Error())
	}
	return &generation{settings: s, h2: h2, base: base}
}

// Store makes s the settings of new connections. When they differ from the ones in use, the
// connections opened with the old ones get a graceful GOAWAY.
func (srv *Server) Store(s Settings) {
	old := srv.gen.Load()
	if old.settings == s {
		return
	}
	srv.gen.Store(newGeneration(s, srv.handler.Logger, srv.countError))
	// No listener or connection is registered with base itself, so Shutdown returns once the
	// GOAWAYs are queued; the connections then end when their last stream does.
	old.end(context.Background())
}

// Settings returns the settings new connections get.
func (srv *Server) Settings() Settings { return srv.gen.Load().settings }

// ServeConn serves the HTTP/2 connection c until it ends. c is closed on return.
func (srv *Server) ServeConn(c net.Conn) {
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		_ = c.Close()
		return
	}
	srv.conns[c] = struct{}{}
	srv.mu.Unlock()
	srv.accepted.Add(1)
	defer srv.forget(c)

	g := srv.gen.Load()
	if g.settings.Engine == EngineNative {
		srv.serveNative(g, c)
		_ = c.Close()
		return
	}
	g.h2.ServeConn(forXNet(c), &http2.ServeConnOpts{
		BaseConfig: g.base,
		Handler: &connHandler{srv: srv, conn: c, maxHead: g.settings.MaxHeaderListBytes,
			readTimeout: g.settings.ReadTimeout},
	})
	_ = c.Close()
}

func (srv *Server) forget(c net.Conn) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	delete(srv.conns, c)
	if srv.closing && len(srv.conns) == 0 {
		select {
		case <-srv.drained:
		default:
			close(srv.drained)
		}
	}
}

// OpenConnections is the number of HTTP/2 connections being served.
func (srv *Server) OpenConnections() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.conns)
}

// Accepted is the number of HTTP/2 connections served since start.
func (srv *Server) Accepted() uint64 { return srv.accepted.Load() }

// Shutdown sends every connection a graceful GOAWAY and waits until their streams in flight
// have finished and they have closed, or until ctx ends; then the connections left are closed
// and ctx's error returned. New connections are refused from the start.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	if len(srv.conns) == 0 {
		select {
		case <-srv.drained:
		default:
			close(srv.drained)
		}
	}
	srv.mu.Unlock()
	srv.gen.Load().end(ctx)
	// Connections of an older generation had their GOAWAY when it was replaced.
	select {
	case <-srv.drained:
		return nil
	case <-ctx.Done():
	}
	srv.mu.Lock()
	for c := range srv.conns {
		_ = c.Close()
	}
	srv.mu.Unlock()
	return ctx.Err()
}

// logWriter sends x/net/http2's log lines (about single misbehaving clients) to the gateway's
// fasthttp logger, which logs them at debug level.
type logWriter struct{ l fasthttp.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if w.l != nil {
		w.l.Printf("http2: %s", p)
	}
	return len(p), nil
}
