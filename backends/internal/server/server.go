// Package server is the shape every backend service shares: a fasthttp server with a router,
// request ids, JSON errors, JSON access logs, Prometheus metrics by route pattern, GET /health
// and GET /metrics, a request body limit, timeouts, panic recovery and graceful shutdown.
//
// A service builds one Server, registers its api.Handlers with Handle, and calls Serve or
// ListenAndServe with a context that is cancelled on SIGTERM/SIGINT.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/fasthttp/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/telemetry"
	"github.com/archway-gateway/archway/discovery"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxBodyBytes    = 1 << 20
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
)

// Config configures a Server. Zero durations and sizes take the defaults above.
type Config struct {
	Service         string       // service name: the "service" label of metrics and log lines
	Addr            string       // listen address for ListenAndServe, e.g. ":3001"
	Logger          *slog.Logger // access and error logs; slog.Default() when nil
	MaxBodyBytes    int          // larger request bodies get a 413
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration // how long in-flight requests may take to finish on shutdown
	// Health checks the service's dependencies (its database) for GET /health; an error makes
	// the answer a 503. Nil means always healthy.
	Health        func(ctx context.Context) error
	HealthTimeout time.Duration
	// Consul, when set, is the agent the service registers with while it serves (service name
	// Service, an HTTP check on /health), deregistering first thing at shutdown.
	Consul string
	// Advertise is the host in the registration; empty means the listen address's host, or
	// 127.0.0.1 when the service listens on every interface.
	Advertise string
	// CheckInterval is how often Consul checks /health (default 5s).
	CheckInterval time.Duration
	// TLSCertFile and TLSKeyFile, when set, make ListenAndServe serve HTTPS (TLS 1.2 or newer)
	// with that certificate; TLSClientCAFile additionally requires clients (the gateway) to
	// present a certificate issued by one of its CAs.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
}

// Server is one service's HTTP server. Register routes before Serve; it is not safe to register
// routes while serving. Serve may be called once.
type Server struct {
	cfg      Config
	log      *slog.Logger
	router   *router.Router
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	http     *fasthttp.Server
}

// New builds a Server with GET /health and GET /metrics already registered.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&cfg.HealthTimeout, DefaultHealthTimeout)

	s := &Server{cfg: cfg, log: cfg.Logger, router: router.New(), registry: prometheus.NewRegistry()}
	labels := prometheus.Labels{"service": cfg.Service}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests served, by route pattern, method and status.",
		ConstLabels: labels,
	}, []string{"route", "method", "status"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "Time to serve HTTP requests, by route pattern and method.",
		ConstLabels: labels, Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method"})
	s.registry.MustRegister(s.requests, s.latency, telemetry.Collector(cfg.Service),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.router.NotFound = s.instrument("unmatched", func(*fasthttp.RequestCtx) error {
		return api.NotFound("no such endpoint")
	})
	s.router.MethodNotAllowed = s.instrument("unmatched", func(ctx *fasthttp.RequestCtx) error {
		return api.Errorf(http.StatusMethodNotAllowed, "method %s not allowed", ctx.Method())
	})
	s.router.PanicHandler = nil // recovery happens in instrument, where the route is known
	// No redirects to the service's own paths: behind a gateway that strips a prefix they lead
	// the client out of the API. A trailing slash is the same resource (see route).
	s.router.RedirectTrailingSlash = false
	s.router.RedirectFixedPath = false

	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	s.Handle(http.MethodGet, "/metrics", func(ctx *fasthttp.RequestCtx) error { metrics(ctx); return nil })
	s.Handle(http.MethodGet, "/health", s.health)

	s.http = &fasthttp.Server{
		Handler:            s.route,
		ErrorHandler:       s.parseError,
		Name:               cfg.Service,
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		CloseOnShutdown:    true,
		Logger:             slogPrintf{s.log},
	}
	return s
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Handle registers h for method and pattern (fasthttp/router syntax: "/products/{id}"). The
// pattern, never the raw path, labels the route's metrics and log lines.
func (s *Server) Handle(method, pattern string, h api.Handler) {
	s.router.Handle(method, pattern, s.instrument(pattern, h))
}

// Registry is the Prometheus registry GET /metrics serves; services may add their own metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Handler returns the complete request handler, for serving over an in-memory listener in tests.
func (s *Server) Handler() fasthttp.RequestHandler { return s.route }

// route dispatches a request with its trailing slashes removed: /products/ and /products,
// /products/1/ and /products/1 are the same resource and get the same answer, without a
// redirect. docs/api.md states it.
func (s *Server) route(ctx *fasthttp.RequestCtx) {
	uri := ctx.Request.URI()
	if p := uri.PathOriginal(); len(p) > 1 && p[len(p)-1] == '/' {
		trimmed := bytes.TrimRight(p, "/")
		if len(trimmed) == 0 {
			trimmed = p[:1]
		}
		uri.SetPathBytes(trimmed)
	}
	s.router.Handler(ctx)
}

// ListenAndServe listens on Config.Addr and serves until ctx is cancelled; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	tlsConfig, err := s.cfg.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	return s.Serve(ctx, ln)
}

// tlsConfig is the server's TLS configuration, or nil without a certificate.
func (c *Config) tlsConfig() (*tls.Config, error) {
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "" && c.TLSClientCAFile == "":
		return nil, nil
	case c.TLSCertFile == "" || c.TLSKeyFile == "":
		return nil, errors.New("tls: the certificate and its key are both required (-tls-cert, -tls-key)")
	case c.Consul != "":
		// The Consul registration's check is plain HTTP; it would mark the instance critical.
		return nil, errors.New("tls: registering in Consul is not supported with TLS (its health check speaks plain HTTP)")
	}
	pair, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", c.TLSCertFile, c.TLSKeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if c.TLSClientCAFile != "" {
		pem, err := os.ReadFile(c.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificate in the file", c.TLSClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Serve serves on ln until ctx is cancelled, then shuts down gracefully: it stops accepting,
// lets in-flight requests finish for up to ShutdownTimeout, closes idle connections and
// returns. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.InfoContext(ctx, "listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	stopRegistration := s.register(ctx, ln.Addr())
	defer stopRegistration()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopRegistration() // out of Consul before draining: no new traffic is sent here
	s.log.InfoContext(ctx, "shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.http.ShutdownWithContext(sctx)
	if serveErr := <-errc; serveErr != nil && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// register keeps the service registered in Consul until the returned function is called, which
// deregisters it and waits for that. Without a Consul address it does nothing.
func (s *Server) register(ctx context.Context, addr net.Addr) func() {
	if s.cfg.Consul == "" {
		return func() {}
	}
	tcp, _ := addr.(*net.TCPAddr)
	host := s.cfg.Advertise
	if host == "" && tcp != nil && !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port := 0
	if tcp != nil {
		port = tcp.Port
	}
	client, err := discovery.NewClient(discovery.ClientConfig{Address: s.cfg.Consul})
	if err != nil {
		s.log.ErrorContext(ctx, "consul client", "error", err.Error())
		return func() {}
	}
	interval := s.cfg.CheckInterval
	if interval == 0 {
		interval = 5 * time.Second
	}
	reg, err := discovery.NewRegistrar(client, discovery.Registration{
		Service: s.cfg.Service, Address: host, Port: port,
		Check: discovery.HTTPCheck{Path: "/health", Interval: interval, Timeout: min(interval, 2*time.Second)},
	}, discovery.RegistrarOptions{Logger: s.log.With("component", "registration")})
	if err != nil {
		s.log.ErrorContext(ctx, "consul registration", "error", err.Error())
		return func() {}
	}
	// Not a child of ctx: the registration ends when the returned function says so, after
	// Serve's ctx is done.
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := reg.Run(rctx); err != nil {
			s.log.WarnContext(ctx, "consul deregistration failed", "error", err.Error())
		}
	}()
	s.log.InfoContext(ctx, "registering in consul", "consul", s.cfg.Consul, "service", s.cfg.Service, "address", net.JoinHostPort(host, strconv.Itoa(port)))
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// instrument wraps a handler with everything each request gets: its id, panic recovery, the
// error response, metrics under route and one access log line.
func (s *Server) instrument(route string, h api.Handler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		requestID := api.EnsureRequestID(ctx)
		span := telemetry.StartServer(ctx, route)
		err := s.call(ctx, h)
		if err != nil {
			status := api.WriteError(ctx, err)
			if status >= 500 {
				s.log.ErrorContext(ctx, "request failed", "request_id", requestID, "route", route, "error", err.Error())
			}
		}
		telemetry.EndServer(span, ctx.Response.StatusCode(), err)
		s.observe(ctx, route, start, err)
	}
}

func (s *Server) call(ctx *fasthttp.RequestCtx, h api.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			ctx.Response.Reset() // drop whatever the handler wrote before it panicked
			ctx.Response.Header.Set(api.HeaderRequestID, api.RequestID(ctx))
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx)
}

func (s *Server) observe(ctx *fasthttp.RequestCtx, route string, start time.Time, err error) {
	elapsed := time.Since(start)
	method := metricMethod(ctx.Method())
	status := ctx.Response.StatusCode()
	s.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	s.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
	attrs := []slog.Attr{
		slog.String("request_id", api.RequestID(ctx)),
		slog.String("method", string(ctx.Method())),
		slog.String("path", string(ctx.Path())),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.Int("bytes_in", len(ctx.Request.Body())),
		slog.Int("bytes_out", len(ctx.Response.Body())),
		slog.String("remote_addr", ctx.RemoteAddr().String()),
	}
	if user := api.LogUser(ctx); user != "" {
		attrs = append(attrs, slog.String("user_id", user))
	}
	if err != nil && status < 500 {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...) // ctx: the line gets the trace ids
}

// metricMethod keeps the method label bounded: a client can send any token as a method.
func metricMethod(m []byte) string {
	switch string(m) {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return string(m)
	}
	return "OTHER"
}

// parseError answers requests fasthttp rejected before routing: oversized bodies (413) and
// malformed requests (400), as JSON like every other error.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	start := time.Now()
	api.EnsureRequestID(ctx)
	var apiErr *api.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		apiErr = api.Errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", s.cfg.MaxBodyBytes)
	default:
		var timeout interface{ Timeout() bool }
		if errors.As(err, &timeout) && timeout.Timeout() {
			apiErr = api.Errorf(http.StatusRequestTimeout, "request not received in time")
		} else {
			apiErr = api.Errorf(http.StatusBadRequest, "malformed HTTP request")
		}
	}
	apiErr.Err = err
	api.WriteError(ctx, apiErr)
	s.observe(ctx, "rejected", start, apiErr)
}

type healthBody struct {
	Status  string `json:"status"`
	Service string `json:"service"`
}

func (s *Server) health(ctx *fasthttp.RequestCtx) error {
	if s.cfg.Health != nil {
		hctx, cancel := context.WithTimeout(context.Background(), s.cfg.HealthTimeout)
		defer cancel()
		if err := s.cfg.Health(hctx); err != nil {
			return &api.Error{Status: http.StatusServiceUnavailable, Message: "database unreachable", Err: err}
		}
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	return api.WriteJSON(ctx, http.StatusOK, healthBody{Status: "ok", Service: s.cfg.Service})
}

// slogPrintf routes fasthttp's own log lines (connection errors) into the structured log.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) {
	// fasthttp's logger gets no request: what it reports (a connection that broke before or
	// between requests) belongs to none.
	l.log.WarnContext(context.Background(), "fasthttp", "detail", fmt.Sprintf(format, args...))
}
