package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/h2"
	"github.com/archway-gateway/archway/gateway/listener"
	"github.com/archway-gateway/archway/gateway/park"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// listenerRuntime is one configured listener: its fasthttp server and, when configured, its
// TLS termination and PROXY protocol acceptor. Made at start (the list of listeners and their
// addresses need a restart to change); the TLS and PROXY settings follow reloads.
type listenerRuntime struct {
	name   string
	addr   string
	server *fasthttp.Server
	stats  *listener.Stats
	tls    *listener.TLS           // nil on a plain listener
	proxy  *listener.ProxyProtocol // nil without proxy_protocol
	h2     *h2.Server              // nil when the listener does not serve HTTP/2
	park   *park.Listener          // nil without server.idle_park_after (park.go)
	parker *park.Parker            // the gateway's one watcher of parked connections, with park
	// writeWait is server.write_and_wait, for the request head check (protocol.Listener).
	writeWait time.Duration
	// writeSlack: how late a client connection's write deadline may fire, so it is re-armed
	// about once per slack rather than before every response (protocol.LazyDeadline).
	writeSlack time.Duration
}

// preparedListeners are the TLS and PROXY settings of a configuration, compiled (certificate
// files read and checked) but not yet in use.
type preparedListeners struct {
	tls   []*listener.TLSSettings // by listener index; nil for plain listeners
	proxy []*listener.ProxyPolicy // by listener index; nil without proxy_protocol
	admin *listener.TLSSettings
	acme  []*listener.ACME // by listener index; nil without tls.acme (running ones are reused)
	h2    h2.Settings
}

// prepareListeners reads every certificate cfg names. Each problem is reported with the field
// and the file; the running listeners are untouched either way.
func (g *Gateway) prepareListeners(cfg *config.Config) (*preparedListeners, error) {
	now := time.Now()
	lst := cfg.EffectiveListeners()
	p := &preparedListeners{tls: make([]*listener.TLSSettings, len(lst)), proxy: make([]*listener.ProxyPolicy, len(lst)), acme: make([]*listener.ACME, len(lst)), h2: http2Settings(cfg)}
	errs := config.NewErrorList(cfg.File)
	for i, l := range lst {
		path := fmt.Sprintf("server.listeners[%d]", i)
		if l.TLS != nil && l.TLS.ACME != nil {
			m, err := g.prepareACME(cfg, i)
			if err != nil {
				errs.Add(cfg.Position(path+".tls.acme"), path+".tls.acme", err.Error())
				continue
			}
			p.acme[i] = m
		}
		if l.TLS != nil {
			var alpn []string
			if l.HTTP2On() {
				alpn = append(alpn, listener.ProtoH2)
			}
			s, err := listener.CompileTLSWithACME(l.TLS, now, p.acme[i], alpn...)
			if err != nil {
				errs.Add(cfg.Position(path+".tls"), path+".tls", err.Error())
			}
			p.tls[i] = s
		}
		if pp := l.ProxyProtocol; pp != nil {
			policy := &listener.ProxyPolicy{HeaderTimeout: cfg.Server.ReadTimeout.D()}
			for _, c := range pp.TrustedProxies {
				policy.Trusted = append(policy.Trusted, c.Prefix)
			}
			p.proxy[i] = policy
		}
	}
	if t := cfg.Admin.TLS; t != nil {
		s, err := listener.CompileTLS(t, now)
		if err != nil {
			errs.Add(cfg.Position("admin.tls"), "admin.tls", err.Error())
		}
		p.admin = s
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// newListeners makes the runtime of every listener of cfg, serving through entry.
func (g *Gateway) newListeners(cfg *config.Config, p *preparedListeners) {
	parker := g.newParker(cfg.Server)
	for i, l := range cfg.EffectiveListeners() {
		rt := &listenerRuntime{name: l.Name, addr: l.Addr, stats: &listener.Stats{}, writeWait: cfg.Server.WriteAndWait.D(), writeSlack: protocol.DeadlineSlack(cfg.Server.WriteTimeout.D())}
		rt.server = newFastServer(cfg.Server, g.entry, g.entry.ListenerHandler(i), g.logger)
		if parker != nil {
			parkOn(rt, parker, cfg.Server)
		}
		if l.TLS == nil {
			rt.server.Handler = g.answerACMEChallenges(rt.server.Handler)
		}
		if l.HTTP2On() {
			// The same handler fasthttp calls: HTTP/2 streams take the listener's one path.
			rt.h2 = h2.NewServer(p.h2, h2.Handler{Serve: rt.server.Handler, ParseError: g.entry.HandleParseError, Logger: fasthttpLogger{g.logger}})
		}
		if p.tls[i] != nil {
			if p.acme[i] != nil {
				p.acme[i].Start(g.ctx)
			}
			rt.tls = listener.NewTLS(p.tls[i], rt.stats)
		}
		if p.proxy[i] != nil {
			rt.proxy = listener.NewProxyProtocol(p.proxy[i], rt.stats)
		}
		g.listeners = append(g.listeners, rt)
	}
	if p.admin != nil {
		g.adminTLS = listener.NewTLS(p.admin, &listener.Stats{})
	}
}

// stopACME stops every listener's certificate manager and waits for its work to end.
func (g *Gateway) stopACME() {
	for _, rt := range g.listeners {
		if rt.tls == nil {
			continue
		}
		if m := rt.tls.Load().ACME; m != nil {
			m.Stop()
		}
	}
}

// commitListeners publishes prepared settings: new handshakes and connections use them.
func (g *Gateway) commitListeners(p *preparedListeners) {
	for i, rt := range g.listeners {
		if rt.tls != nil && p.tls[i] != nil {
			old := rt.tls.Load().ACME
			if p.acme[i] != nil {
				p.acme[i].Start(g.ctx) // a no-op for the running manager a reload kept
			}
			rt.tls.Store(p.tls[i])
			if old != nil && old != p.acme[i] {
				old.Stop()
			}
		}
		if rt.proxy != nil && p.proxy[i] != nil {
			rt.proxy.Store(p.proxy[i])
		}
		if rt.h2 != nil {
			rt.h2.Store(p.h2)
		}
	}
	if g.adminTLS != nil && p.admin != nil {
		g.adminTLS.Store(p.admin)
	}
}

func newFastServer(s config.Server, entry *proxy.Entry, handler fasthttp.RequestHandler, logger *slog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:         handler,
		ErrorHandler:    entry.HandleParseError,
		ExpectHandler:   entry.HandleExpect,
		ReadTimeout:     s.ReadTimeout.D(),
		WriteTimeout:    s.WriteTimeout.D(),
		IdleTimeout:     s.IdleTimeout.D(),
		ReadBufferSize:  int(s.MaxHeaderBytes.Bytes()),
		WriteBufferSize: 16 << 10,
		// An idle keep-alive connection gives its 16 KiB write buffer (and response body buffer)
		// back to fasthttp's pools instead of holding them until its next request: 10 000 idle
		// connections take about 50 MiB less (bench: idle scenario). The read buffer stays with
		// the connection because request bodies are streamed.
		ReduceMemoryUsage:            true,
		MaxRequestBodySize:           int(min(s.MaxBodyBytes.Bytes(), 1<<62)),
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		TCPKeepalive:                 true,
		SecureErrorLogMessage:        true,
		Logger:                       fasthttpLogger{logger},
	}
}

// Listen opens the socket of every configured listener, in configuration order. Serve them
// with ServeListeners.
func (g *Gateway) Listen() ([]net.Listener, error) {
	var lns []net.Listener
	for _, rt := range g.listeners {
		ln, err := net.Listen("tcp", rt.addr)
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listen %s on %s: %w", rt.name, rt.addr, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// ServeListeners serves lns (from Listen) until Shutdown. It returns the first error of any of
// them, or nil once all have stopped.
func (g *Gateway) ServeListeners(lns []net.Listener) error {
	if len(lns) != len(g.listeners) {
		return fmt.Errorf("serve: %d sockets for %d listeners", len(lns), len(g.listeners))
	}
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		go func() { errc <- g.serveOn(i, ln) }()
	}
	for range lns {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// serveOn serves listener i on ln. The connection caps come first, at accept, on the peer's
// address (reading a PROXY header there would let one slow sender stall the accept loop); then
// PROXY protocol (it precedes the TLS handshake on the wire), then TLS, and last the request
// head check, which reads plaintext (bare LF, request-line length).
func (g *Gateway) serveOn(i int, ln net.Listener) error {
	// fasthttp's Shutdown closes only the listeners its Serve has already registered: a Shutdown
	// that comes first would leave this one accepting for ever. The socket is registered here
	// and closed by shutdownListeners too; after a shutdown it is not served at all.
	g.servingMu.Lock()
	if g.shutDown {
		g.servingMu.Unlock()
		_ = ln.Close()
		return nil
	}
	g.serving = append(g.serving, ln)
	g.servingMu.Unlock()
	rt := g.listeners[i]
	ln = g.conns.wrap(ln)
	if rt.proxy != nil {
		ln = rt.proxy.Listener(ln)
	}
	if rt.tls != nil {
		ln = rt.tls.Listener(ln)
	}
	if rt.h2 != nil {
		// HTTP/2 connections leave here for the HTTP/2 server; the rest reach fasthttp as before.
		ln = h2.NewDemux(ln, rt.h2, rt.tls != nil, g.handshakeTimeout)
	}
	if rt.park != nil {
		// Below the request head check, so a woken connection gets a fresh one (park.go).
		ln = rt.park.Wrap(ln)
	}
	// Write-and-wait holds a response only where the check sees the socket through transparent
	// wrappers (the caps, parking): not under TLS, PROXY protocol or the HTTP/2 demux.
	err := rt.server.Serve(protocol.Listener{Listener: ln, WriteWait: rt.writeWait, WriteDeadlineSlack: rt.writeSlack})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// shutdownListeners stops every listener's server, letting requests in flight finish.
func (g *Gateway) shutdownListeners(ctx context.Context) error {
	g.servingMu.Lock()
	g.shutDown = true
	serving := g.serving
	g.servingMu.Unlock()
	for _, ln := range serving {
		_ = ln.Close() // fasthttp closes it too when its Serve got that far; twice is harmless
	}
	errs := make([]error, len(g.listeners))
	var wg sync.WaitGroup
	for i, rt := range g.listeners {
		wg.Go(func() {
			// The socket may be closed above already: that is not a failure to shut down.
			if err := rt.server.ShutdownWithContext(ctx); !errors.Is(err, net.ErrClosed) {
				errs[i] = err
			}
		})
	}
	h2errs := make([]error, len(g.listeners))
	for i, rt := range g.listeners {
		if rt.h2 != nil {
			wg.Go(func() { h2errs[i] = rt.h2.Shutdown(ctx) })
		}
	}
	wg.Wait()
	g.closeParker()
	return errors.Join(append(errs, h2errs...)...)
}

// handshakeTimeout bounds a new connection's TLS handshake or, on an h2c listener, the wait for
// its first bytes, as server.read_timeout bounds them on the HTTP/1.1 path.
func (g *Gateway) handshakeTimeout() time.Duration { return g.Config().Server.ReadTimeout.D() }

// http2Settings are the HTTP/2 connection settings of cfg.
func http2Settings(cfg *config.Config) h2.Settings {
	s := cfg.Server
	h := s.HTTP2
	return h2.Settings{
		MaxConcurrentStreams:         uint32(h.MaxConcurrentStreams),
		MaxHeaderListBytes:           int(h.MaxHeaderListBytes.Bytes()),
		IdleTimeout:                  h.IdleTimeout.D(),
		ReadTimeout:                  h.ReadTimeout.D(),
		WriteTimeout:                 s.WriteTimeout.D(),
		MaxUploadBufferPerStream:     int32(h.MaxUploadBufferPerStream.Bytes()),
		MaxUploadBufferPerConnection: int32(h.MaxUploadBufferPerConnection.Bytes()),
		Engine:                       http2Engine(h.Engine),
	}
}

// http2Engine is the h2 engine of server.http2.engine. The validator refuses unknown values; an
// empty one (a Config not built by the loader) gets the default, as the loader would give it.
func http2Engine(e config.HTTP2Engine) h2.Engine {
	switch e {
	case config.HTTP2EngineNative:
		return h2.EngineNative
	case config.HTTP2EngineXNet:
		return h2.EngineXNet
	}
	return http2Engine(config.DefaultHTTP2Engine)
}

// AdminTLSConfig is the admin listener's TLS configuration (it follows reloads), or nil when
// admin.tls is not set.
func (g *Gateway) AdminTLSConfig() *tls.Config {
	if g.adminTLS == nil {
		return nil
	}
	return g.adminTLS.Config()
}

// buildListenerPolicies fills s.Listeners: one policy per listener, with its own routing table
// when routes name listeners.
func buildListenerPolicies(cfg *config.Config, s *proxy.Snapshot, entries []router.Route[*proxy.Route]) error {
	lst := cfg.EffectiveListeners()
	named := false
	for _, r := range cfg.Routes {
		named = named || len(r.Match.Listeners) > 0
	}
	var redirectPort []byte
	for _, l := range lst {
		if l.TLS != nil {
			if _, port, err := net.SplitHostPort(l.Addr); err == nil && port != "443" {
				redirectPort = []byte(":" + port)
			}
			break
		}
	}
	s.Listeners = make([]proxy.ListenerPolicy, len(lst))
	for i, l := range lst {
		p := proxy.ListenerPolicy{Name: l.Name, TLS: l.TLS != nil, RedirectHTTPS: l.RedirectHTTPS, RedirectPort: redirectPort}
		if t := l.TLS; t != nil {
			if t.HSTS != "" {
				p.HSTS = []byte(t.HSTS)
			}
			if t.ClientCertHeader != "" {
				p.ClientCertHeader = []byte(t.ClientCertHeader)
			}
		}
		if named {
			var mine []router.Route[*proxy.Route]
			for j, r := range cfg.Routes {
				if len(r.Match.Listeners) == 0 || slices.Contains(r.Match.Listeners, l.Name) {
					mine = append(mine, entries[j])
				}
			}
			table, err := router.New(mine)
			if err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
			p.Table = table
		}
		s.Listeners[i] = p
	}
	return nil
}

// listenerShape is what of a listener needs a restart to change.
func listenerShape(c *config.Config) []string {
	var out []string
	for _, l := range c.EffectiveListeners() {
		out = append(out, fmt.Sprintf("%s on %s (tls: %t, proxy_protocol: %t, http2: %t)", l.Name, l.Addr, l.TLS != nil, l.ProxyProtocol != nil, l.HTTP2On()))
	}
	return out
}

// certificateWatchInterval is how often certificate files are checked for changes.
var certificateWatchInterval = 2 * time.Second

// watchCertificates re-applies the running configuration when a certificate, key or client CA
// file it names changes on disk (a renewal by certbot, a Kubernetes Secret update): the files
// are read and checked again, and the new certificates serve new handshakes. A broken file is
// refused like any bad reload, and the certificates in use stay. Runs until ctx ends.
func (g *Gateway) watchCertificates(ctx context.Context) {
	t := time.NewTicker(certificateWatchInterval)
	defer t.Stop()
	last := fingerprint(g.Config())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cfg := g.Config()
		now := fingerprint(cfg)
		if now == last {
			continue
		}
		last = now
		g.logger.Info("certificate files changed; reloading them")
		_, _ = g.Apply(cfg, "certificates") // logged, and in /config and metrics
	}
}

// fingerprint is the size and modification time of every TLS file cfg names (the listeners',
// the admin API's and the upstreams'). Stat follows
// symbolic links, so a Kubernetes Secret's ..data swap shows as a change.
func fingerprint(cfg *config.Config) string {
	var files []string
	add := func(t *config.TLS) {
		if t == nil {
			return
		}
		for _, c := range t.Certificates {
			files = append(files, c.Cert, c.Key)
		}
		if t.ClientCA != "" {
			files = append(files, t.ClientCA)
		}
	}
	for _, l := range cfg.EffectiveListeners() {
		add(l.TLS)
	}
	add(cfg.Admin.TLS)
	for _, name := range sortedNames(cfg.Upstreams) {
		if t := cfg.Upstreams[name].TLS; t != nil {
			files = append(files, t.CAFile, t.CertFile, t.KeyFile)
		}
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "" })
	var b []byte
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b = fmt.Appendf(b, "%s:missing;", f)
			continue
		}
		b = fmt.Appendf(b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return string(b)
}

// listenerCollector exports certificate expiry and the listeners' TLS and PROXY counters.
type listenerCollector struct{ g *Gateway }

var (
	certExpiryDesc = prometheus.NewDesc("archway_tls_certificate_expiry_seconds",
		"When the certificate expires (Unix time), by its first name; alert on archway_tls_certificate_expiry_seconds - time().", []string{"name"}, nil)
	handshakesDesc = prometheus.NewDesc("archway_tls_handshakes_total",
		"TLS handshakes completed, by listener.", []string{"listener"}, nil)
	handshakeErrorsDesc = prometheus.NewDesc("archway_tls_handshake_errors_total",
		"TLS handshakes failed, by listener and reason.", []string{"listener", "reason"}, nil)
	proxyRejectedDesc = prometheus.NewDesc("archway_proxy_protocol_rejected_total",
		"Connections closed on a PROXY protocol listener, by listener and reason (untrusted sender, malformed header).", []string{"listener", "reason"}, nil)
)

func (c listenerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certExpiryDesc
	ch <- handshakesDesc
	ch <- handshakeErrorsDesc
	ch <- proxyRejectedDesc
	ch <- acmeCertificatesDesc
	ch <- acmeErrorsDesc
	describeParking(ch)
}

func (c listenerCollector) Collect(ch chan<- prometheus.Metric) {
	expiry := map[string]time.Time{}
	note := func(t *listener.TLS) {
		if t == nil {
			return
		}
		certs := t.Load().Certificates
		if a := t.Load().ACME; a != nil {
			certs = append(certs[:len(certs):len(certs)], a.Certificates()...)
		}
		for _, cert := range certs {
			if prev, ok := expiry[cert.Name]; !ok || cert.NotAfter.Before(prev) {
				expiry[cert.Name] = cert.NotAfter
			}
		}
	}
	for _, rt := range c.g.listeners {
		note(rt.tls)
		if rt.tls != nil {
			ch <- prometheus.MustNewConstMetric(handshakesDesc, prometheus.CounterValue, float64(rt.stats.Handshakes.Load()), rt.name)
			rt.stats.EachHandshakeError(func(reason string, n uint64) {
				ch <- prometheus.MustNewConstMetric(handshakeErrorsDesc, prometheus.CounterValue, float64(n), rt.name, reason)
			})
			if a := rt.tls.Load().ACME; a != nil {
				collectACME(ch, rt.name, a.Stats())
			}
		}
		if rt.proxy != nil {
			for r, name := range listener.ProxyReasonNames {
				ch <- prometheus.MustNewConstMetric(proxyRejectedDesc, prometheus.CounterValue, float64(rt.stats.ProxyRejected[r].Load()), rt.name, name)
			}
		}
	}
	note(c.g.adminTLS)
	collectParking(ch, c.g)
	for name, at := range expiry {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(at.Unix()), name)
	}
}
