// Package nginxconf writes the nginx configuration equivalent to an Archway routes.yaml, so the
// benchmark compares the two proxies doing the same work. The generated file is saved beside
// the results so the baseline can be audited.
//
// The mapping, directive by directive:
//
//   - upstreams: balance least_conn → least_conn, round_robin → (default), random → random,
//     ip_hash → hash $remote_addr consistent, weighted → weight=N; max_fails/fail_timeout as
//     they are; upstream keep-alive with keepalive (max_conns_per_target idle connections per
//     worker), keepalive_timeout (idle_conn_timeout) and no per-connection request cap;
//   - every proxied location: proxy_http_version 1.1, proxy_set_header Connection "", the
//     forwarding headers Archway sets (X-Real-IP, X-Forwarded-For, -Host, -Proto, -Prefix,
//     X-Request-ID), the security headers (add_header ... always), the route's header changes;
//   - match.path → location = /p; match.path_prefix → location = /p and location /p/ (Archway
//     matches prefixes on segment boundaries); methods → limit_except (nginx answers 403 where
//     Archway answers 405); strip_prefix/add_prefix → rewrite ... break;
//   - rate_limit → limit_req_zone and limit_req ... nodelay (burst, the key: client_ip →
//     $binary_remote_addr, header:X → $http_x, route → one shared key);
//   - cache → proxy_cache_path, proxy_cache with proxy_cache_valid for the statuses Archway
//     caches by default, proxy_cache_lock (concurrent misses wait for one) and, with
//     stale_while_revalidate, proxy_cache_use_stale updating with a background update;
//   - websocket → proxy_set_header Upgrade/Connection from the request, proxy_read_timeout
//     from its idle_timeout;
//   - respond → default_type and return (a status of 400 or more without a body gets a JSON
//     error body like Archway's, without the request id);
//   - static → root, index, try_files with the SPA fallback, Cache-Control no-cache, and each
//     immutable prefix a nested location with a year's immutable Cache-Control (strip_prefix
//     on a static route is refused);
//   - compression → gzip on with gzip_min_length, gzip_comp_level, gzip_types, gzip_proxied any
//     and gzip_vary;
//   - server: read/write/idle timeouts, max_body_bytes, max_header_bytes, access_log, the
//     health path answered by nginx itself; unmatched paths → 404.
//
// Client keep-alive connections carry any number of requests (keepalive_requests), as
// fasthttp's do. What Archway does and nginx cannot (JWT rate-limit keys, host matching in
// this generator) is refused with an error rather than approximated silently.
package nginxconf

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/archway-gateway/archway/bench/peerconf"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/static"
)

// Options are what the generated file needs beyond routes.yaml.
type Options struct {
	// Listen is the address nginx listens on ("127.0.0.1:8081"); the config's server.listen
	// when empty.
	Listen string
	// Workers is worker_processes: "1" (the fair baseline on two cores) or "auto".
	Workers string
	// Dir holds the pid file, temp directories and the proxy cache.
	Dir string
	// WorkerConnections bounds connections per worker (client and upstream together).
	WorkerConnections int
	// TLSCert and TLSKey, when both are set, make the server speak HTTPS with them: TLS 1.2
	// and 1.3, the AEAD suites and curves Go's crypto/tls prefers (as Archway's listener),
	// session tickets for resumption, HTTP/1.1 only unless HTTP2 is set.
	TLSCert, TLSKey string
	// HTTP2 adds http2 to the listener: with TLS, ALPN h2 beside HTTP/1.1; without, HTTP/2 with
	// prior knowledge (h2c) only, as nginx 1.22's plain listen ... http2 has it.
	HTTP2 bool
}

// cachedStatuses are the statuses Archway caches without explicit freshness (RFC 9111
// heuristically cacheable ones); see docs/configuration.md.
var cachedStatuses = "200 203 204 300 301 308 404 405 410 414 501"

// Write writes the nginx configuration equivalent to cfg.
func Write(w io.Writer, cfg *config.Config, o Options) error {
	if o.Workers == "" {
		o.Workers = "1"
	}
	if o.WorkerConnections == 0 {
		o.WorkerConnections = 16384
	}
	if o.Listen == "" {
		o.Listen = cfg.Server.Listen
	}
	listen, err := nginxListen(o.Listen)
	if err != nil {
		return err
	}
	for _, r := range cfg.Routes {
		if r.Match.Host != "" {
			return fmt.Errorf("route %s: host matching is not translated to nginx", r.Name)
		}
		if rl := r.RateLimit; rl != nil && strings.HasPrefix(rl.Key, "jwt:") {
			return fmt.Errorf("route %s: rate-limit key %s has no nginx equivalent", r.Name, rl.Key)
		}
		if r.Access != nil || r.ForwardAuth != nil || r.Redirect != nil || r.Rewrite != nil || r.Split != nil {
			return fmt.Errorf("route %s: access, forward_auth, redirect, rewrite and split are not translated to nginx by this generator", r.Name)
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
	p(0, "# Generated by bench/nginxconf from %s: the nginx equivalent of Archway's configuration.", peerconf.BaseName(cfg.File))
	p(0, "daemon off;")
	p(0, "worker_processes %s;", o.Workers)
	p(0, "worker_rlimit_nofile %d;", 2*o.WorkerConnections+1024)
	p(0, "pid %s/nginx.pid;", o.Dir)
	p(0, "error_log %s/error.log warn;", o.Dir)
	p(0, "events {")
	p(1, "worker_connections %d;", o.WorkerConnections)
	p(1, "multi_accept on;")
	p(0, "}")
	p(0, "http {")
	p(1, "default_type application/octet-stream;")
	if cfg.AccessLog.On() {
		out := cfg.AccessLog.Output
		switch out {
		case "stdout":
			out = "/dev/stdout"
		case "stderr":
			out = "/dev/stderr"
		}
		if out == cfg.AccessLog.Output {
			// A file: buffered like Archway's log (access_log.buffer, access_log.flush).
			p(1, "access_log %s combined buffer=%dk flush=%s;", out, max(1, cfg.AccessLog.Buffer.Bytes()>>10), dur(cfg.AccessLog.Flush.D()))
		} else {
			p(1, "access_log %s;", out)
		}
	} else {
		p(1, "access_log off;")
	}
	p(1, "server_tokens off;")
	p(1, "client_body_temp_path %s/client_body;", o.Dir)
	p(1, "proxy_temp_path %s/proxy_temp;", o.Dir)
	p(1, "fastcgi_temp_path %s/fastcgi_temp;", o.Dir)
	p(1, "uwsgi_temp_path %s/uwsgi_temp;", o.Dir)
	p(1, "scgi_temp_path %s/scgi_temp;", o.Dir)
	p(1, "client_header_timeout %s;", dur(s.ReadTimeout.D()))
	p(1, "client_body_timeout %s;", dur(s.ReadTimeout.D()))
	p(1, "send_timeout %s;", dur(s.WriteTimeout.D()))
	p(1, "keepalive_timeout %s;", dur(s.IdleTimeout.D()))
	p(1, "keepalive_requests 1000000000;")
	p(1, "client_max_body_size %d;", s.MaxBodyBytes.Bytes())
	p(1, "large_client_header_buffers 4 %d;", s.MaxHeaderBytes.Bytes())
	p(1, "")
	p(1, "map $http_upgrade $connection_upgrade {")
	p(2, "default upgrade;")
	p(2, "'' close;")
	p(1, "}")

	// Upstreams, in name order.
	names := make([]string, 0, len(cfg.Upstreams))
	for n := range cfg.Upstreams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		u := cfg.Upstreams[n]
		p(1, "")
		p(1, "upstream %s {", n)
		switch u.Balance {
		case "least_conn":
			p(2, "least_conn;")
		case "random":
			p(2, "random;")
		case "ip_hash":
			p(2, "hash $remote_addr consistent;")
		}
		for _, t := range u.Targets {
			line := "server " + t.Addr
			if u.Balance == "weighted" && t.Weight > 1 {
				line += fmt.Sprintf(" weight=%d", t.Weight)
			}
			line += fmt.Sprintf(" max_fails=%d fail_timeout=%s;", u.MaxFails, dur(u.FailTimeout.D()))
			p(2, "%s", line)
		}
		p(2, "keepalive %d;", u.MaxConnsPerTarget)
		p(2, "keepalive_timeout %s;", dur(u.IdleConnTimeout.D()))
		p(2, "keepalive_requests 1000000000;")
		p(1, "}")
	}

	// Zones for rate limits and caches.
	for _, r := range cfg.Routes {
		if rl := r.RateLimit; rl != nil {
			p(1, "")
			p(1, "limit_req_zone %s zone=rl_%s:%dm rate=%s;", limitKey(rl.Key), r.Name, zoneMiB(rl.MaxKeys), nginxRate(rl.Rate))
		}
		if c := r.Cache; c != nil {
			p(1, "")
			p(1, "proxy_cache_path %s/cache_%s levels=1:2 keys_zone=cache_%s:10m max_size=%d inactive=%s use_temp_path=off;",
				o.Dir, r.Name, r.Name, c.MaxBytes.Bytes(), dur(c.TTL.D()+c.StaleWhileRevalidate.D()))
		}
	}

	p(1, "")
	p(1, "server {")
	if o.TLSCert != "" && o.TLSKey != "" {
		h2 := ""
		if o.HTTP2 {
			h2 = " http2"
		}
		p(2, "listen %s ssl%s reuseport backlog=4096;", listen, h2)
		p(2, "ssl_certificate %s;", o.TLSCert)
		p(2, "ssl_certificate_key %s;", o.TLSKey)
		p(2, "ssl_protocols TLSv1.2 TLSv1.3;")
		p(2, "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;")
		p(2, "ssl_ecdh_curve X25519:prime256v1:secp384r1;")
		p(2, "ssl_prefer_server_ciphers off;")
		p(2, "ssl_session_tickets on;")
		p(2, "ssl_session_timeout 1d;")
	} else if o.HTTP2 {
		p(2, "listen %s http2 reuseport backlog=4096;", listen)
	} else {
		p(2, "listen %s reuseport backlog=4096;", listen)
	}
	p(2, "")
	p(2, "location = %s {", s.HealthPath)
	p(3, "default_type application/json;")
	p(3, "return 200 '{\"status\":\"ok\"}\\n';")
	p(2, "}")

	for _, r := range cfg.Routes {
		u := cfg.Upstreams[r.Upstream]
		var locs []string
		if r.Match.Path != "" {
			locs = []string{"= " + r.Match.Path}
		} else {
			pre := strings.TrimSuffix(r.Match.PathPrefix, "/")
			if pre == "" {
				locs = []string{"/"}
			} else {
				locs = []string{"= " + pre, pre + "/"}
			}
		}
		if r.Static != nil && (r.StripPrefix != "" || r.AddPrefix != "") {
			return fmt.Errorf("route %s: a static route with strip_prefix or add_prefix is not translated", r.Name)
		}
		for _, loc := range locs {
			p(2, "")
			p(2, "# route %s", r.Name)
			p(2, "location %s {", loc)
			writeRoute(p, cfg, r, u, !strings.HasPrefix(loc, "= "))
			p(2, "}")
		}
	}
	if !peerconf.HasCatchAll(cfg) {
		p(2, "")
		p(2, "location / {")
		p(3, "default_type application/json;")
		p(3, "return 404 '{\"error\":\"no route\"}\\n';")
		p(2, "}")
	}
	p(1, "}")
	p(0, "}")
	_, err = io.WriteString(w, b.String())
	return err
}

// writeRoute writes the body of a route's location; prefix is false for the exact-match
// location of a prefix route, which cannot hold nested locations.
func writeRoute(p func(int, string, ...any), cfg *config.Config, r *config.Route, u *config.Upstream, prefix bool) {
	if len(r.Match.Methods) > 0 {
		ms := slices.Clone(r.Match.Methods)
		p(3, "limit_except %s { deny all; }", strings.Join(ms, " "))
	}
	if rl := r.RateLimit; rl != nil {
		p(3, "limit_req zone=rl_%s burst=%d nodelay;", r.Name, rl.Burst)
		p(3, "limit_req_status 429;")
	}
	if c := r.Compression; c != nil {
		p(3, "gzip on;")
		p(3, "gzip_proxied any;")
		p(3, "gzip_vary on;")
		p(3, "gzip_min_length %d;", c.MinSize.Bytes())
		if c.Level > 0 {
			p(3, "gzip_comp_level %d;", c.Level)
		}
		// text/html is always compressed by nginx and may not be listed again.
		types := slices.DeleteFunc(slices.Clone(c.Types), func(t string) bool { return t == "text/html" })
		if len(types) > 0 {
			p(3, "gzip_types %s;", strings.Join(types, " "))
		}
	}
	switch {
	case r.Respond != nil:
		writeRespond(p, r.Respond)
	case r.Static != nil:
		writeStatic(p, cfg, r, prefix)
	default:
		writeProxy(p, cfg, r, u)
	}
	writeResponseHeaders(p, 3, cfg, r)
}

// writeRespond: a direct answer. Without a body, a status of 400 or more gets a JSON error body
// like the gateway's (without the request id, which nginx has no way to put in a return).
func writeRespond(p func(int, string, ...any), rs *config.Respond) {
	ct, body := rs.ContentType, rs.Body
	if body == "" && rs.Status >= 400 {
		ct = "application/json"
		body = fmt.Sprintf("{\"error\":%q}", strings.ToLower(http.StatusText(rs.Status)))
	}
	if ct == "" {
		ct = "text/plain"
	}
	p(3, "default_type %s;", ct)
	p(3, "return %d %s;", rs.Status, quote(body))
}

// writeStatic: files under root; the SPA fallback for paths that match no file; immutable
// prefixes in nested locations with a year's Cache-Control and no fallback, everything else
// with no-cache, as Archway's static handler answers.
func writeStatic(p func(int, string, ...any), cfg *config.Config, r *config.Route, prefix bool) {
	st := r.Static
	p(3, "root %s;", st.Root)
	if st.Index != "" {
		p(3, "index %s;", st.Index)
	}
	if st.SPAFallback != "" {
		p(3, "try_files $uri $uri/ /%s;", strings.TrimPrefix(st.SPAFallback, "/"))
	} else {
		p(3, "try_files $uri $uri/ =404;")
	}
	p(3, "add_header Cache-Control \"%s\" always;", static.RevalidateCacheControl)
	if !prefix {
		return
	}
	base := strings.TrimSuffix(r.Match.PathPrefix, "/")
	for _, im := range st.Immutable {
		p(3, "location ^~ %s/%s {", base, strings.TrimPrefix(im, "/"))
		p(4, "try_files $uri =404;")
		p(4, "add_header Cache-Control \"%s\" always;", static.ImmutableCacheControl)
		writeResponseHeaders(p, 4, cfg, r)
		p(3, "}")
	}
}

func writeProxy(p func(int, string, ...any), cfg *config.Config, r *config.Route, u *config.Upstream) {
	if r.StripPrefix != "" || r.AddPrefix != "" {
		strip := regexpQuote(r.StripPrefix)
		add := r.AddPrefix
		if add == "" {
			p(3, "rewrite ^%s$ / break;", strip)
		} else {
			p(3, "rewrite ^%s$ %s break;", strip, add)
		}
		p(3, "rewrite ^%s(/.*)$ %s$1 break;", strip, add)
	}
	p(3, "proxy_pass http://%s;", r.Upstream)
	p(3, "proxy_http_version 1.1;")
	if r.WebSocket != nil {
		p(3, "proxy_set_header Upgrade $http_upgrade;")
		p(3, "proxy_set_header Connection $connection_upgrade;")
	} else {
		p(3, "proxy_set_header Connection \"\";")
	}
	p(3, "proxy_set_header Host $http_host;")
	p(3, "proxy_set_header X-Real-IP $remote_addr;")
	if len(cfg.Server.TrustedProxies) > 0 {
		p(3, "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
	} else {
		p(3, "proxy_set_header X-Forwarded-For $remote_addr;")
	}
	p(3, "proxy_set_header X-Forwarded-Host $http_host;")
	p(3, "proxy_set_header X-Forwarded-Proto $scheme;")
	p(3, "proxy_set_header X-Request-ID $request_id;")
	if r.StripPrefix != "" {
		p(3, "proxy_set_header X-Forwarded-Prefix %s;", r.StripPrefix)
	}
	for _, name := range r.Headers.Request.Remove {
		p(3, "proxy_set_header %s \"\";", name)
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Request.Set) {
		p(3, "proxy_set_header %s %s;", k, quote(r.Headers.Request.Set[k]))
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Request.Add) {
		p(3, "proxy_set_header %s %s;", k, quote(r.Headers.Request.Add[k]))
	}
	p(3, "proxy_connect_timeout %s;", dur(u.ConnectTimeout.D()))
	read := r.Timeout.D()
	if r.WebSocket != nil && r.WebSocket.IdleTimeout.D() > read {
		read = r.WebSocket.IdleTimeout.D()
	}
	p(3, "proxy_read_timeout %s;", dur(read))
	p(3, "proxy_send_timeout %s;", dur(read))
	if r.Retries > 0 {
		p(3, "proxy_next_upstream error timeout http_502 http_503 http_504;")
		p(3, "proxy_next_upstream_tries %d;", r.Retries+1)
	}
	if c := r.Cache; c != nil {
		p(3, "proxy_cache cache_%s;", r.Name)
		p(3, "proxy_cache_key $host$uri$is_args$args;")
		p(3, "proxy_cache_methods GET HEAD;")
		p(3, "proxy_cache_valid %s %s;", cachedStatuses, dur(c.TTL.D()))
		p(3, "proxy_cache_lock on;")
		if c.StaleWhileRevalidate > 0 {
			p(3, "proxy_cache_use_stale updating;")
			p(3, "proxy_cache_background_update on;")
		}
		p(3, "add_header X-Cache $upstream_cache_status always;")
	}
}

// writeResponseHeaders: add_header in a location replaces every inherited one, so each location
// carries the whole set: the request id echo, the security headers and the route's own.
func writeResponseHeaders(p func(int, string, ...any), depth int, cfg *config.Config, r *config.Route) {
	p(depth, "add_header X-Request-ID $request_id always;")
	set := r.Headers.Response.Set
	removed := map[string]bool{}
	for _, k := range r.Headers.Response.Remove {
		removed[strings.ToLower(k)] = true
		p(depth, "proxy_hide_header %s;", k)
	}
	for _, k := range peerconf.SortedKeys(cfg.Server.SecurityHeaders) {
		if removed[strings.ToLower(k)] || peerconf.HasKeyFold(set, k) {
			continue
		}
		p(depth, "add_header %s %s always;", k, quote(cfg.Server.SecurityHeaders[k]))
	}
	for _, k := range peerconf.SortedKeys(set) {
		p(depth, "proxy_hide_header %s;", k)
		p(depth, "add_header %s %s always;", k, quote(set[k]))
	}
	for _, k := range peerconf.SortedKeys(r.Headers.Response.Add) {
		p(depth, "add_header %s %s always;", k, quote(r.Headers.Response.Add[k]))
	}
}

func limitKey(key string) string {
	switch {
	case key == "" || key == "client_ip":
		return "$binary_remote_addr"
	case key == "route":
		return "$server_port" // one bucket for everything the route serves
	case strings.HasPrefix(key, "header:"):
		name := strings.ToLower(strings.TrimPrefix(key, "header:"))
		return "$http_" + strings.ReplaceAll(name, "-", "_")
	}
	return "$binary_remote_addr"
}

// zoneMiB sizes a limit_req zone for maxKeys states (nginx keeps about 8 000 per MiB).
func zoneMiB(maxKeys int) int {
	return max(1, int(math.Ceil(float64(maxKeys)/8000)))
}

// nginxRate writes a rate as nginx takes it: whole requests per second or per minute.
func nginxRate(r config.Rate) string {
	perSec := r.PerSecond()
	if perSec >= 1 && perSec == math.Trunc(perSec) {
		return fmt.Sprintf("%dr/s", int64(perSec))
	}
	return fmt.Sprintf("%dr/m", max(1, int64(math.Round(perSec*60))))
}

func nginxListen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "" {
		return port, nil
	}
	return net.JoinHostPort(host, port), nil
}

// dur writes a duration in nginx units: milliseconds unless it is whole seconds.
func dur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return fmt.Sprintf("%dms", int64(d/time.Millisecond))
}

func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
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
