// Package haproxyconf writes the HAProxy configuration equivalent to an Archway routes.yaml, so
// the benchmark compares HAProxy doing the same work as Archway and nginx (bench/nginxconf is
// the nginx twin; the mapping below follows it line for line where HAProxy allows).
//
// The mapping:
//
//   - one frontend on the listen address; /health answered by HAProxy itself
//     (http-request return), as Archway and nginx answer it before any route;
//   - one backend per route (HAProxy keeps per-route policies, the cache and the rate-limit
//     table, in the backend), its servers the route's upstream targets: balance least_conn →
//     leastconn, round_robin → roundrobin, random → random, ip_hash → source with consistent
//     hashing, weighted → roundrobin with weight N;
//   - upstream keep-alive: http-reuse always (an idle server connection serves any client's
//     next request, as nginx's keepalive pool and Archway's pool do), pool-max-conn
//     max_conns_per_target, pool-purge-delay idle_conn_timeout. max_fails has no passive
//     equivalent without active checks in HAProxy: not translated (the benchmark's targets
//     never fail);
//   - the forwarding headers Archway sets, each replacing a client's copy: X-Real-IP,
//     X-Forwarded-For (the peer, as Archway without trusted proxies), X-Forwarded-Host,
//     X-Forwarded-Proto, X-Forwarded-Prefix with strip_prefix, and X-Request-ID, a UUID per
//     request (unique-id-format %[uuid()]) echoed on the response;
//   - match.path → path; match.path_prefix → path or path_beg prefix/ (segment boundaries, as
//     Archway); methods → 405 for the others (as Archway; nginx answers 403);
//     strip_prefix/add_prefix → set-path and replace-path;
//   - rate_limit → a stick-table per route counting http_req_rate over a second and 429 above
//     rate+burst: a sliding-window count, not a token bucket, close enough for a limit that
//     never rejects (the benchmark's) and the same work per request: one table lookup and
//     update;
//   - cache → HAProxy's small-object cache (cache section, http-request cache-use,
//     http-response cache-store), max-age the route's ttl, X-Cache HIT or MISS from
//     res.cache_hit; a response without explicit freshness gets Cache-Control: max-age=ttl
//     before it is stored, because HAProxy's cache stores only responses with freshness or
//     a validator, where Archway and nginx's proxy_cache_valid store heuristically cacheable
//     ones too (the one header more that clients see is the price of doing the same work);
//   - websocket → nothing to add (HAProxy tunnels upgrades by itself), timeout tunnel the
//     route's idle_timeout;
//   - respond → http-request return with the status, content type and body (a status of 400 or
//     more without a body gets a JSON error body, as nginxconf writes it);
//   - response headers: the server's security headers set when the response lacks them, the
//     route's set/add/remove;
//   - server: timeout client/http-request (read_timeout), http-keep-alive (idle_timeout),
//     server (the route's timeout), connect (the upstream's connect_timeout); maxconn from
//     max_connections, capped to what the open-file limit allows (Options.FDLimit); access_log → log to a syslog socket (HAProxy writes no files: the
//     benchmark runs the socket's reader) in HAProxy's httplog format.
//
// What Archway does and this generator does not translate (static files, compression, JWT,
// CORS, access lists, forward_auth, redirects, rewrites, splits, host matching) is refused with
// an error rather than approximated silently.
package haproxyconf

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/archway-gateway/archway/bench/peerconf"
	"github.com/archway-gateway/archway/gateway/config"
)

// Options are what the generated file needs beyond routes.yaml.
type Options struct {
	// Listen is the address HAProxy listens on; the config's server.listen when empty.
	Listen string
	// Threads is nbthread: 1 for one core (placement A), 2 for the unpinned placement.
	Threads int
	// Dir holds the pid file.
	Dir string
	// LogAddr is where access log lines go when routes.yaml turns the access log on: a syslog
	// address as HAProxy's log directive takes it (a unix datagram socket path, or
	// udp@host:port). Required then: HAProxy cannot write a file itself.
	LogAddr string
	// TLS, when set, makes the frontend terminate TLS with this PEM file (certificate and key
	// concatenated), TLS 1.2 minimum, ALPN http/1.1 unless HTTP2 is set.
	TLS string
	// HTTP2 offers h2 on the TLS frontend too (ALPN h2,http/1.1); without TLS it makes the
	// frontend HTTP/2 with prior knowledge (h2c, proto h2) only. The backends stay HTTP/1.1.
	HTTP2 bool
	// FDLimit is the open-file limit HAProxy will run under (0: unknown). HAProxy refuses to
	// start when maxconn needs more descriptors than that (two per connection plus a few), so
	// maxconn is capped to fit it.
	FDLimit int
}

// MaxConnFor is the highest maxconn HAProxy accepts under an open-file limit: it reserves two
// descriptors per connection (client and server side) and a few of its own.
func MaxConnFor(fdLimit int) int { return (fdLimit - 100) / 2 }

// Write writes the HAProxy configuration equivalent to cfg.
func Write(w io.Writer, cfg *config.Config, o Options) error {
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.Listen == "" {
		o.Listen = cfg.Server.Listen
	}
	if strings.HasPrefix(o.Listen, ":") {
		o.Listen = "0.0.0.0" + o.Listen
	}
	if cfg.AccessLog.On() && o.LogAddr == "" {
		return fmt.Errorf("access_log is on: HAProxy logs to a syslog socket, and Options.LogAddr is empty")
	}
	for _, r := range cfg.Routes {
		switch {
		case r.Match.Host != "":
			return fmt.Errorf("route %s: host matching is not translated to HAProxy", r.Name)
		case r.RateLimit != nil && strings.HasPrefix(r.RateLimit.Key, "jwt:"):
			return fmt.Errorf("route %s: rate-limit key %s has no HAProxy equivalent", r.Name, r.RateLimit.Key)
		case r.Static != nil || r.Compression != nil:
			return fmt.Errorf("route %s: static files and compression are not translated to HAProxy", r.Name)
		case r.Access != nil || r.ForwardAuth != nil || r.Redirect != nil || r.Rewrite != nil || r.Split != nil:
			return fmt.Errorf("route %s: access, forward_auth, redirect, rewrite and split are not translated to HAProxy", r.Name)
		case r.Auth != nil || r.CORS != nil:
			return fmt.Errorf("route %s: auth and cors are not translated to HAProxy", r.Name)
		}
	}

	b := &strings.Builder{}
	p := func(indent int, format string, args ...any) {
		if format == "" {
			b.WriteByte('\n')
			return
		}
		b.WriteString(strings.Repeat("    ", indent))
		fmt.Fprintf(b, format, args...)
		b.WriteByte('\n')
	}
	s := cfg.Server
	p(0, "# Generated by bench/haproxyconf from %s: the HAProxy equivalent of Archway's configuration.", peerconf.BaseName(cfg.File))
	p(0, "global")
	p(1, "nbthread %d", o.Threads)
	maxconn := s.MaxConnections
	if o.FDLimit > 0 {
		maxconn = min(maxconn, MaxConnFor(o.FDLimit))
	}
	p(1, "maxconn %d", maxconn)
	p(1, "pidfile %s/haproxy.pid", o.Dir)
	p(1, "tune.bufsize %d", max(16384, int(s.MaxHeaderBytes.Bytes())+1024))
	if cfg.AccessLog.On() {
		p(1, "log %s len 8192 format rfc5424 local0 info", o.LogAddr)
	}
	if o.TLS != "" {
		p(1, "ssl-default-bind-options ssl-min-ver TLSv1.2")
		p(1, "ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
	}
	p(0, "")
	p(0, "defaults")
	p(1, "mode http")
	if cfg.AccessLog.On() {
		p(1, "log global")
		p(1, "option httplog")
	} else {
		p(1, "no log")
	}
	p(1, "timeout client %s", dur(s.ReadTimeout.D()))
	p(1, "timeout http-request %s", dur(s.ReadTimeout.D()))
	p(1, "timeout http-keep-alive %s", dur(s.IdleTimeout.D()))
	p(1, "timeout connect 5s")
	p(1, "timeout server %s", dur(s.WriteTimeout.D()))
	p(1, "http-reuse always")
	p(1, "option http-keep-alive")

	// Caches, one per cached route.
	for _, r := range cfg.Routes {
		if c := r.Cache; c != nil {
			p(0, "")
			p(0, "cache cache_%s", r.Name)
			p(1, "total-max-size %d", min(4095, max(1, int(c.MaxBytes.Bytes()>>20))))
			p(1, "max-object-size %d", min(c.MaxEntryBytes.Bytes(), c.MaxBytes.Bytes()/2))
			p(1, "max-age %d", int(c.TTL.D()/time.Second))
		}
	}

	p(0, "")
	p(0, "frontend archway_equivalent")
	bind := "bind " + o.Listen
	if o.TLS != "" {
		alpn := "http/1.1"
		if o.HTTP2 {
			alpn = "h2,http/1.1"
		}
		bind += " ssl crt " + o.TLS + " alpn " + alpn
	} else if o.HTTP2 {
		bind += " proto h2"
	}
	p(1, "%s", bind)
	p(1, "maxconn %d", maxconn)
	p(1, "unique-id-format %%[uuid()]")
	p(1, "http-request return status 200 content-type application/json string \"{\\\"status\\\":\\\"ok\\\"}\" if { path %s }", s.HealthPath)
	for _, r := range cfg.Routes {
		p(1, "use_backend route_%s if %s", r.Name, matchACL(r))
	}
	if !peerconf.HasCatchAll(cfg) {
		// http-request rules run before use_backend whatever their order: the 404 lives in a
		// backend of its own.
		p(1, "default_backend no_route")
		p(0, "")
		p(0, "backend no_route")
		p(1, "http-request return status 404 content-type application/json string \"{\\\"error\\\":\\\"no route\\\"}\"")
	}

	for _, r := range cfg.Routes {
		p(0, "")
		p(0, "backend route_%s", r.Name)
		writeRoute(p, cfg, r, o)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// matchACL is the anonymous ACL that selects the route.
func matchACL(r *config.Route) string {
	if r.Match.Path != "" {
		return fmt.Sprintf("{ path %s }", r.Match.Path)
	}
	pre := strings.TrimSuffix(r.Match.PathPrefix, "/")
	if pre == "" {
		return "TRUE"
	}
	return fmt.Sprintf("{ path %s } || { path_beg %s/ }", pre, pre)
}

func writeRoute(p func(int, string, ...any), cfg *config.Config, r *config.Route, o Options) {
	if len(r.Match.Methods) > 0 {
		p(1, "http-request return status 405 content-type application/json string \"{\\\"error\\\":\\\"method not allowed\\\"}\" unless { method %s }", strings.Join(r.Match.Methods, " "))
	}
	if rl := r.RateLimit; rl != nil {
		typ, track := "ip", "src"
		switch {
		case rl.Key == "route":
			typ, track = "integer", "int(1)"
		case strings.HasPrefix(rl.Key, "header:"):
			typ, track = "string len 128", "req.hdr("+strings.TrimPrefix(rl.Key, "header:")+")"
		}
		p(1, "stick-table type %s size %d expire 10s store http_req_rate(1s)", typ, max(1, rl.MaxKeys))
		p(1, "http-request track-sc0 %s", track)
		p(1, "http-request deny deny_status 429 if { sc_http_req_rate(0) gt %d }", int64(math.Ceil(rl.Rate.PerSecond()))+int64(rl.Burst))
	}
	if rs := r.Respond; rs != nil {
		ct, body := rs.ContentType, rs.Body
		if body == "" && rs.Status >= 400 {
			ct = "application/json"
			body = fmt.Sprintf("{\"error\":%q}", strings.ToLower(http.StatusText(rs.Status)))
		}
		if ct == "" {
			ct = "text/plain"
		}
		writeResponseHeaders(p, cfg, r)
		if body == "" {
			p(1, "http-request return status %d", rs.Status)
		} else {
			p(1, "http-request return status %d content-type %s string %s", rs.Status, quote(ct), quote(body))
		}
		return
	}
	u := cfg.Upstreams[r.Upstream]
	switch u.Balance {
	case "least_conn":
		p(1, "balance leastconn")
	case "random":
		p(1, "balance random")
	case "ip_hash":
		p(1, "balance source")
		p(1, "hash-type consistent")
	default:
		p(1, "balance roundrobin")
	}
	p(1, "timeout connect %s", dur(u.ConnectTimeout.D()))
	p(1, "timeout server %s", dur(r.Timeout.D()))
	if ws := r.WebSocket; ws != nil {
		p(1, "timeout tunnel %s", dur(ws.IdleTimeout.D()))
	}
	if r.Retries > 0 {
		p(1, "retries %d", r.Retries)
		p(1, "option redispatch 1")
		p(1, "retry-on conn-failure empty-response response-timeout 502 503 504")
	}
	// The forwarding headers, replacing whatever the client sent.
	p(1, "http-request set-header X-Real-IP %%[src]")
	p(1, "http-request set-header X-Forwarded-For %%[src]")
	p(1, "http-request set-header X-Forwarded-Host %%[req.hdr(host)]")
	if o.TLS != "" {
		p(1, "http-request set-header X-Forwarded-Proto https")
	} else {
		p(1, "http-request set-header X-Forwarded-Proto http")
	}
	p(1, "http-request set-header X-Request-ID %%[unique-id]")
	if r.StripPrefix != "" {
		p(1, "http-request set-header X-Forwarded-Prefix %s", quote(r.StripPrefix))
	}
	for _, name := range r.Headers.Request.Remove {
		p(1, "http-request del-header %s", name)
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Request.Set) {
		p(1, "http-request set-header %s %s", k, quote(r.Headers.Request.Set[k]))
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Request.Add) {
		p(1, "http-request add-header %s %s", k, quote(r.Headers.Request.Add[k]))
	}
	if r.StripPrefix != "" || r.AddPrefix != "" {
		strip := strings.TrimSuffix(r.StripPrefix, "/")
		add := strings.TrimSuffix(r.AddPrefix, "/")
		root := add
		if root == "" {
			root = "/"
		}
		p(1, "http-request set-path %s if { path %s }", root, strip)
		p(1, "http-request replace-path ^%s(/.*)$ %s\\1", regexpQuote(strip), add)
	}
	if c := r.Cache; c != nil {
		p(1, "http-request cache-use cache_%s", r.Name)
		// HAProxy stores only responses with explicit freshness or a validator; Archway and
		// nginx (proxy_cache_valid) also store heuristically cacheable ones for the ttl. The
		// same work: give such a response the ttl before storing it.
		p(1, "http-response set-header Cache-Control \"max-age=%d\" unless { res.hdr(Cache-Control) -m found } || { res.hdr(Expires) -m found }", int(c.TTL.D()/time.Second))
		p(1, "http-response cache-store cache_%s", r.Name)
		p(1, "http-response set-header X-Cache HIT if { res.cache_hit }")
		p(1, "http-response set-header X-Cache MISS unless { res.cache_hit }")
	}
	writeResponseHeaders(p, cfg, r)
	for i, t := range u.Targets {
		line := fmt.Sprintf("server t%d %s", i+1, t.Addr)
		if u.Balance == "weighted" && t.Weight > 1 {
			line += fmt.Sprintf(" weight %d", t.Weight)
		}
		line += fmt.Sprintf(" pool-max-conn %d pool-purge-delay %s", u.MaxConnsPerTarget, dur(u.IdleConnTimeout.D()))
		p(1, "%s", line)
	}
}

// writeResponseHeaders: the request id echo, the security headers where the response lacks
// them (an upstream's own value wins, as in Archway), and the route's own changes.
func writeResponseHeaders(p func(int, string, ...any), cfg *config.Config, r *config.Route) {
	verb := "http-response"
	if r.Respond != nil {
		verb = "http-after-response" // http-request return skips http-response rules
	}
	p(1, "%s set-header X-Request-ID %%[unique-id]", verb)
	set := r.Headers.Response.Set
	removed := map[string]bool{}
	for _, k := range r.Headers.Response.Remove {
		removed[strings.ToLower(k)] = true
		p(1, "%s del-header %s", verb, k)
	}
	for _, k := range peerconf.SortedKeys(cfg.Server.SecurityHeaders) {
		if removed[strings.ToLower(k)] || peerconf.HasKeyFold(set, k) {
			continue
		}
		p(1, "%s set-header %s %s unless { res.hdr(%s) -m found }", verb, k, quote(cfg.Server.SecurityHeaders[k]), k)
	}
	for _, k := range peerconf.SortedKeys(set) {
		p(1, "%s set-header %s %s", verb, k, quote(set[k]))
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Response.Add) {
		p(1, "%s add-header %s %s", verb, k, quote(r.Headers.Response.Add[k]))
	}
}

// dur writes a duration in HAProxy units: milliseconds unless it is whole seconds.
func dur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return fmt.Sprintf("%dms", int64(d/time.Millisecond))
}

// quote writes a double-quoted HAProxy argument; inside one, only \, " and $ need escaping.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v) + `"`
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`.+*?()|[]{}^$\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
