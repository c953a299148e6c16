package config

import "slices"

// HTTP2 is the server-wide HTTP/2 settings: they apply to every listener that speaks HTTP/2
// (listener http2). They can change on reload; connections opened after the reload use the new
// values, and HTTP/2 connections opened before it are told to go away gracefully (GOAWAY, their
// streams in flight finish) so that clients reconnect with the new ones.
type HTTP2 struct {
	// MaxConcurrentStreams is how many streams one client connection may have open at once
	// (SETTINGS_MAX_CONCURRENT_STREAMS). Go's server and nginx (128) are in the same range.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// MaxHeaderListBytes bounds a request's decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE,
	// names and values plus 32 bytes a field, RFC 9113 section 6.5.2). It defaults to
	// server.max_header_bytes, the HTTP/1.1 limit, so a head refused with 431 over one protocol
	// is refused over the other.
	MaxHeaderListBytes Size `yaml:"max_header_list_bytes"`
	// IdleTimeout closes a connection with no open stream for this long (GOAWAY first).
	// Defaults to server.idle_timeout.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// ReadTimeout bounds one stream's request, head and body, as server.read_timeout bounds an
	// HTTP/1.1 request. Defaults to server.read_timeout.
	ReadTimeout Duration `yaml:"read_timeout"`
	// MaxUploadBufferPerStream is the flow-control window a stream's request body may fill
	// before the gateway has read it (memory held per stream); MaxUploadBufferPerConnection
	// bounds the sum over a connection's streams.
	MaxUploadBufferPerStream     Size `yaml:"max_upload_buffer_per_stream"`
	MaxUploadBufferPerConnection Size `yaml:"max_upload_buffer_per_connection"`
	// Engine is the HTTP/2 implementation serving the connections (see HTTP2Engine). It follows
	// reloads like the fields above: connections opened after one use the new engine.
	Engine HTTP2Engine `yaml:"engine"`
}

// HTTP2Engine is the implementation of HTTP/2 to clients: server.http2.engine.
type HTTP2Engine string

// HTTP/2 engines.
const (
	// HTTP2EngineNative is the gateway's own HTTP/2 frame layer: the responses of many streams
	// leave in one write, and a stream needs no goroutine-to-goroutine hand-off, http.Request or
	// header map on its way to the fasthttp request.
	HTTP2EngineNative HTTP2Engine = "native"
	// HTTP2EngineXNet is golang.org/x/net/http2's server behind a bridge to fasthttp, kept as a
	// fallback.
	HTTP2EngineXNet HTTP2Engine = "xnet"
)

var http2Engines = []HTTP2Engine{HTTP2EngineNative, HTTP2EngineXNet}

// HTTP/2 defaults.
const (
	DefaultHTTP2MaxConcurrentStreams = 250
	// DefaultHTTP2MaxUploadBufferPerStream is 1 MiB, Go's net/http default: a 100 ms round trip
	// still streams 10 MiB/s per stream.
	DefaultHTTP2MaxUploadBufferPerStream = Size(1 << 20)
	// DefaultHTTP2MaxUploadBufferPerConnection is 4 MiB: four streams at full window.
	DefaultHTTP2MaxUploadBufferPerConnection = Size(4 << 20)
	// DefaultHTTP2Engine is the native engine: over TLS it serves HTTP/2 at about 0.6× the
	// CPU per request of the bridge to x/net/http2 and passes h2spec whole (docs/benchmarks.md).
	DefaultHTTP2Engine = HTTP2EngineNative

	// maxHTTP2Window is the largest flow-control window HTTP/2 allows (RFC 9113 section 6.9.1).
	maxHTTP2Window = Size(1<<31 - 1)
	// minHTTP2Window is HTTP/2's initial window: a smaller one cannot be advertised.
	minHTTP2Window = Size(65535)
)

// HTTP2On reports whether the listener speaks HTTP/2: ALPN h2 on a TLS listener, HTTP/2 with
// prior knowledge (h2c, RFC 9113 section 3.3) on a plain one. Unset means on for TLS, off for
// plain (a plain listener usually sits behind a load balancer speaking HTTP/1.1).
func (l *Listener) HTTP2On() bool {
	if l.HTTP2 != nil {
		return *l.HTTP2
	}
	return l.TLS != nil
}

func (c *Config) applyHTTP2Defaults() {
	s := &c.Server
	h := &s.HTTP2
	setDefault(&h.MaxConcurrentStreams, DefaultHTTP2MaxConcurrentStreams)
	setDefault(&h.MaxHeaderListBytes, s.MaxHeaderBytes)
	setDefault(&h.IdleTimeout, s.IdleTimeout)
	setDefault(&h.ReadTimeout, s.ReadTimeout)
	setDefault(&h.MaxUploadBufferPerStream, DefaultHTTP2MaxUploadBufferPerStream)
	setDefault(&h.MaxUploadBufferPerConnection, DefaultHTTP2MaxUploadBufferPerConnection)
	setDefault(&h.Engine, DefaultHTTP2Engine)
}

func (v *validator) http2() {
	h := &v.c.Server.HTTP2
	if h.MaxConcurrentStreams < 1 || h.MaxConcurrentStreams > 1<<20 {
		v.errorf("server.http2.max_concurrent_streams", "must be between 1 and 1048576, got %d", h.MaxConcurrentStreams)
	}
	if h.MaxHeaderListBytes < 1024 || h.MaxHeaderListBytes > 16<<20 {
		v.errorf("server.http2.max_header_list_bytes", "must be between 1KiB and 16MiB, got %d", h.MaxHeaderListBytes)
	}
	v.positive("server.http2.idle_timeout", h.IdleTimeout)
	v.positive("server.http2.read_timeout", h.ReadTimeout)
	window := func(path string, s Size) {
		if s < minHTTP2Window || s > maxHTTP2Window {
			v.errorf(path, "must be between 65535 bytes (HTTP/2's initial window) and 2GiB-1, got %d", s)
		}
	}
	window("server.http2.max_upload_buffer_per_stream", h.MaxUploadBufferPerStream)
	window("server.http2.max_upload_buffer_per_connection", h.MaxUploadBufferPerConnection)
	if h.MaxUploadBufferPerConnection < h.MaxUploadBufferPerStream {
		v.errorf("server.http2.max_upload_buffer_per_connection", "must be at least max_upload_buffer_per_stream (%d), got %d", h.MaxUploadBufferPerStream, h.MaxUploadBufferPerConnection)
	}
	if !slices.Contains(http2Engines, h.Engine) {
		v.errorf("server.http2.engine", "must be native or xnet, got %q%s", h.Engine, suggest(string(h.Engine), names(http2Engines)))
	}
}
