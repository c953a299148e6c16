package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Balance policies a user may name.
var balancePolicies = []string{"least_conn", "round_robin", "random", "weighted", "ip_hash"}

// StandardMethods are the methods a route may list and the gateway will forward. TRACE and
// CONNECT are refused at the edge.
var StandardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

// hopByHop are headers that describe one connection, not the message; routes may not set them.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

var routeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

type validator struct {
	c    *Config
	errs *ErrorList
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs.add(v.c.Position(path), path, fmt.Sprintf(format, args...))
}

func (c *Config) validate(errs *ErrorList) {
	v := &validator{c: c, errs: errs}
	v.server()
	v.connections()
	v.parking()
	v.writeAndWait()
	v.listeners()
	v.http2()
	v.admin()
	v.accessLog()
	v.consul()
	v.upstreams()
	v.routes()
	v.redis()
	v.jwt()
	v.tracing()
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.errorf(path, "must be greater than 0 (an infinite timeout lets one slow peer hold resources forever)")
	}
}

func (v *validator) server() {
	s := &v.c.Server
	v.listenAddr("server.listen", s.Listen)
	v.positive("server.read_timeout", s.ReadTimeout)
	v.positive("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.shutdown_grace", s.ShutdownGrace)
	if s.MaxHeaderBytes < 1<<10 || s.MaxHeaderBytes > 1<<20 {
		v.errorf("server.max_header_bytes", "must be between 1KiB and 1MiB, got %s", s.MaxHeaderBytes)
	}
	if s.MaxBodyBytes <= 0 {
		v.errorf("server.max_body_bytes", "must be greater than 0")
	}
	if s.EncodedSlashes != KeepEncodedSlashes && s.EncodedSlashes != RejectEncodedSlashes {
		v.errorf("server.encoded_slashes", "must be keep or reject, got %q", s.EncodedSlashes)
	}
	if !strings.HasPrefix(s.HealthPath, "/") {
		v.errorf("server.health_path", "must start with /, got %q", s.HealthPath)
	}
	for _, name := range sortedKeys(s.SecurityHeaders) {
		v.headerField("server.security_headers."+name, name, s.SecurityHeaders[name])
	}
}

func (v *validator) listenAddr(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errorf(path, "invalid listen address %q (examples: :8080, 127.0.0.1:9901)", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errorf(path, "invalid port %q", port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.errorf(path, "listen host must be an IP address or empty, got %q", host)
		}
	}
}

// IsLoopbackListen reports whether a listen address only accepts local connections.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) admin() {
	a := &v.c.Admin
	if a.Listen == "" {
		return // admin API disabled
	}
	v.listenAddr("admin.listen", a.Listen)
	if !IsLoopbackListen(a.Listen) && a.Token == "" {
		v.errorf("admin.listen", "admin API on non-loopback address %q needs admin.token", a.Listen)
	}
	if a.Token != "" && len(a.Token) < 16 {
		v.errorf("admin.token", "must be at least 16 characters")
	}
}

func (v *validator) accessLog() {
	if v.c.AccessLog.Output == "" {
		v.errorf("access_log.output", "must be stdout, stderr or a file path")
	}
	v.accessLogBuffering()
}

func (v *validator) upstreams() {
	if len(v.c.Upstreams) == 0 {
		v.errorf("upstreams", "at least one upstream is required")
	}
	for _, name := range sortedKeys(v.c.Upstreams) {
		u := v.c.Upstreams[name]
		p := "upstreams." + name
		if !routeNameRE.MatchString(name) {
			v.errorf(p, "upstream name %q may only contain letters, digits, '_', '.' and '-'", name)
		}
		if !slices.Contains(balancePolicies, u.Balance) {
			v.errorf(p+".balance", "unknown policy %q; one of %s%s", u.Balance, strings.Join(balancePolicies, ", "), suggest(u.Balance, balancePolicies))
		}
		switch {
		case u.Consul != nil && len(u.Targets) > 0:
			v.errorf(p+".consul", "targets and consul are exclusive: list the targets or discover them")
		case u.Consul != nil:
			v.upstreamConsul(p+".consul", u.Consul)
		case len(u.Targets) == 0:
			v.errorf(p+".targets", "at least one target is required (or a consul section to discover them)")
		}
		seen := map[string]int{}
		for i, t := range u.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, i)
			v.targetAddr(tp, t.Addr)
			if prev, dup := seen[t.Addr]; dup {
				v.errorf(tp, "duplicate target %q (also targets[%d])", t.Addr, prev)
			}
			seen[t.Addr] = i
			if t.Weight < 1 || t.Weight > 1000 {
				v.errorf(tp+".weight", "must be between 1 and 1000, got %d", t.Weight)
			}
		}
		if u.MaxFails < 0 {
			v.errorf(p+".max_fails", "must be 0 (passive health off) or more, got %d", u.MaxFails)
		}
		v.positive(p+".fail_timeout", u.FailTimeout)
		v.positive(p+".connect_timeout", u.ConnectTimeout)
		v.positive(p+".timeout", u.Timeout)
		v.positive(p+".queue_timeout", u.QueueTimeout)
		v.positive(p+".idle_conn_timeout", u.IdleConnTimeout)
		if u.MaxConnsPerTarget < 1 || u.MaxConnsPerTarget > 65535 {
			v.errorf(p+".max_conns_per_target", "must be between 1 and 65535, got %d", u.MaxConnsPerTarget)
		}
		v.buffering(p, &u.Buffering)
		v.upstreamTLS(p, u)
		v.upstreamProtocol(p, u)
		if u.MaxResponseBytes <= 0 {
			v.errorf(p+".max_response_bytes", "must be greater than 0")
		}
		if u.Outlier.Consecutive5xx < 0 {
			v.errorf(p+".outlier.consecutive_5xx", "must be 0 (off) or more, got %d", u.Outlier.Consecutive5xx)
		}
		v.positive(p+".outlier.ejection_time", u.Outlier.EjectionTime)
		if u.Outlier.MaxEjectionPercent < 1 || u.Outlier.MaxEjectionPercent > 100 {
			v.errorf(p+".outlier.max_ejection_percent", "must be between 1 and 100, got %d", u.Outlier.MaxEjectionPercent)
		}
		if hc := u.HealthCheck; hc != nil {
			hp := p + ".health_check"
			if !strings.HasPrefix(hc.Path, "/") {
				v.errorf(hp+".path", "must start with /, got %q", hc.Path)
			}
			v.positive(hp+".interval", hc.Interval)
			v.positive(hp+".timeout", hc.Timeout)
			if hc.Timeout > hc.Interval {
				v.errorf(hp+".timeout", "must not exceed the interval (%s)", hc.Interval.D())
			}
			if hc.Healthy < 1 || hc.Unhealthy < 1 {
				v.errorf(hp, "healthy and unhealthy must be at least 1")
			}
		}
	}
}

func (v *validator) upstreamConsul(p string, uc *UpstreamConsul) {
	if v.c.Consul == nil {
		v.errorf(p, "needs the top-level consul section (the agent's address)")
	}
	if uc.Service == "" {
		v.errorf(p+".service", "required")
	}
	if uc.OnEmpty != "keep_last" && uc.OnEmpty != "fail" {
		v.errorf(p+".on_empty", "must be keep_last or fail, got %q", uc.OnEmpty)
	}
	v.positive(p+".keep_last_for", uc.KeepLastFor)
}

func (v *validator) consul() {
	cs := v.c.Consul
	if cs == nil {
		return
	}
	v.targetAddr("consul.address", cs.Address)
	if r := cs.Register; r != nil {
		if !routeNameRE.MatchString(r.Service) {
			v.errorf("consul.register.service", "invalid service name %q", r.Service)
		}
		if ip, err := netip.ParseAddr(r.Address); err == nil && ip.IsUnspecified() {
			v.errorf("consul.register.address", "must be an address others can reach, not %s", r.Address)
		}
	}
}

func (v *validator) targetAddr(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		v.errorf(path, "invalid target %q: want host:port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf(path, "invalid port in target %q", addr)
	}
}

type matchKey struct{ exact, prefix, host, listeners string }

func (v *validator) routes() {
	if len(v.c.Routes) == 0 {
		v.errorf("routes", "at least one route is required")
	}
	names := map[string]int{}
	byMatch := map[matchKey][]int{}
	for i, r := range v.c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			v.errorf(p+".name", "every route needs a name (it labels metrics and logs)")
		case !routeNameRE.MatchString(r.Name):
			v.errorf(p+".name", "route name %q may only contain letters, digits, '_', '.' and '-'", r.Name)
		default:
			if prev, dup := names[r.Name]; dup {
				v.errorf(p+".name", "duplicate route name %q (also routes[%d])", r.Name, prev)
			}
			names[r.Name] = i
		}
		v.match(p, r)
		kinds := 0
		for _, set := range []bool{r.Upstream != "", r.Static != nil, r.Respond != nil} {
			if set {
				kinds++
			}
		}
		switch {
		case kinds == 0 && r.Redirect == nil:
			v.errorf(p+".upstream", "required (or static, to serve files, or respond, to answer directly)")
		case kinds > 1:
			v.errorf(p, "a route either proxies (upstream), serves files (static) or answers directly (respond): one of them")
		case r.Respond != nil:
			if r.Respond.Status < 200 || r.Respond.Status > 599 {
				v.errorf(p+".respond.status", "must be between 200 and 599, got %d", r.Respond.Status)
			}
			if problem := fieldValueProblem(r.Respond.ContentType); problem != "" {
				v.errorf(p+".respond.content_type", "%s", problem)
			}
		case r.Upstream == "":
		case v.c.Upstreams[r.Upstream] == nil:
			v.errorf(p+".upstream", "undefined upstream %q%s", r.Upstream, suggest(r.Upstream, sortedKeys(v.c.Upstreams)))
		}
		if r.Upstream != "" && v.c.Upstreams[r.Upstream] != nil {
			v.positive(p+".timeout", r.Timeout)
		}
		v.rewrite(p, r)
		v.redirects(p, r)
		if r.Retries < 0 || r.Retries > 10 {
			v.errorf(p+".retries", "must be between 0 and 10, got %d", r.Retries)
		}
		if r.WebSocket != nil && len(r.Match.Methods) > 0 && !slices.Contains(r.Match.Methods, "GET") {
			v.errorf(p+".websocket", "WebSocket upgrades are GET requests, but the route's methods leave GET out")
		}
		v.headerOps(p+".headers.request", r.Headers.Request, true)
		v.headerOps(p+".headers.response", r.Headers.Response, false)
		v.routePolicies(p, r)
		v.routeListeners(p, r)

		key := matchKey{exact: r.Match.Path, prefix: CleanPrefix(r.Match.PathPrefix), host: r.Match.Host, listeners: strings.Join(r.Match.Listeners, ",")}
		for _, j := range byMatch[key] {
			if methodsOverlap(v.c.Routes[j].Match.Methods, r.Match.Methods) {
				v.errorf(p+".match", "matches the same requests as routes[%d] (%q): same path, host and methods", j, v.c.Routes[j].Name)
				break
			}
		}
		byMatch[key] = append(byMatch[key], i)
	}
}

func methodsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, m := range a {
		if slices.Contains(b, m) {
			return true
		}
	}
	return false
}

func (v *validator) match(p string, r *Route) {
	m := &r.Match
	switch {
	case m.Path == "" && m.PathPrefix == "":
		v.errorf(p+".match", "needs path or path_prefix")
	case m.Path != "" && m.PathPrefix != "":
		v.errorf(p+".match", "path and path_prefix are exclusive; use one")
	case m.Path != "":
		v.cleanPath(p+".match.path", m.Path)
	default:
		v.cleanPath(p+".match.path_prefix", m.PathPrefix)
	}
	if m.Host != "" {
		h := strings.TrimPrefix(m.Host, "*.")
		if strings.Contains(h, "*") || !validHost(h) {
			v.errorf(p+".match.host", "invalid host %q (examples: shop.example.com, *.example.com)", m.Host)
		}
	}
	seen := map[string]bool{}
	for i, method := range m.Methods {
		mp := fmt.Sprintf("%s.match.methods[%d]", p, i)
		if !slices.Contains(StandardMethods, method) {
			v.errorf(mp, "unsupported method %q; one of %s", method, strings.Join(StandardMethods, ", "))
		}
		if seen[method] {
			v.errorf(mp, "duplicate method %q", method)
		}
		seen[method] = true
	}
}

// validHost accepts DNS names and IP literals, with an optional port.
func validHost(h string) bool {
	if host, port, err := net.SplitHostPort(h); err == nil {
		if _, err := strconv.Atoi(port); err != nil {
			return false
		}
		h = host
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// cleanPath requires a path in the normal form requests are matched in: starting with '/', no
// empty, "." or ".." segments, and only characters allowed in a path.
func (v *validator) cleanPath(path, s string) {
	if !strings.HasPrefix(s, "/") {
		v.errorf(path, "must start with /, got %q", s)
		return
	}
	if s == "/" {
		return
	}
	trimmed := strings.TrimSuffix(s, "/")
	for _, seg := range strings.Split(trimmed[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			v.errorf(path, "%q is not a normalised path (no //, /./ or /../)", s)
			return
		}
	}
	for i := 0; i < len(s); i++ {
		if !isPathChar(s[i]) {
			v.errorf(path, "%q contains %q, which must be percent-encoded", s, s[i])
			return
		}
	}
}

// isPathChar reports whether c may appear unencoded in a path (RFC 3986 pchar or '/').
func isPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

// CleanPrefix returns the form a path prefix is matched in: without a trailing slash, except "/".
func CleanPrefix(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

func (v *validator) rewrite(p string, r *Route) {
	if r.StripPrefix != "" {
		v.cleanPath(p+".strip_prefix", r.StripPrefix)
		base := r.Match.PathPrefix
		if base == "" {
			base = r.Match.Path
		}
		sp := CleanPrefix(r.StripPrefix)
		base = CleanPrefix(base)
		if sp != "/" && base != sp && !strings.HasPrefix(base, sp+"/") {
			v.errorf(p+".strip_prefix", "%q is not a prefix of the route's path %q, so it would never apply", r.StripPrefix, base)
		}
	}
	if r.AddPrefix != "" {
		v.cleanPath(p+".add_prefix", r.AddPrefix)
	}
}

func (v *validator) headerOps(p string, ops HeaderOps, request bool) {
	for _, name := range sortedKeys(ops.Set) {
		v.settableHeader(p+".set."+name, name, ops.Set[name], request)
	}
	for _, name := range sortedKeys(ops.Add) {
		v.settableHeader(p+".add."+name, name, ops.Add[name], request)
	}
	for i, name := range ops.Remove {
		if !validHeaderName(name) {
			v.errorf(fmt.Sprintf("%s.remove[%d]", p, i), "invalid header name %q", name)
		}
	}
}

func (v *validator) settableHeader(path, name, value string, request bool) {
	v.headerField(path, name, value)
	for _, h := range hopByHop {
		if strings.EqualFold(h, name) {
			v.errorf(path, "%s is a hop-by-hop header; the gateway manages it per connection", name)
		}
	}
	if strings.EqualFold(name, "Content-Length") {
		v.errorf(path, "Content-Length is set from the body")
	}
	if !request && strings.EqualFold(name, "Host") {
		v.errorf(path, "Host is a request header")
	}
}

func (v *validator) headerField(path, name, value string) {
	if !validHeaderName(name) {
		v.errorf(path, "invalid header name %q", name)
	}
	if problem := fieldValueProblem(value); problem != "" {
		v.errorf(path, "header value %s", problem)
	}
}

// fieldValueProblem says what makes s unfit to be sent as a header field value, or "". A value
// is visible characters (and obs-text) with spaces and tabs between them (RFC 9110, section
// 5.5); HTTP/2 clients refuse a response with a control character in a value, and nghttp2 (so
// curl) one that starts or ends with whitespace (RFC 9113, section 8.2.1).
func fieldValueProblem(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Sprintf("contains the control character %q at byte %d", c, i)
		}
	}
	if strings.Trim(s, " \t") != s {
		return "starts or ends with a space or tab"
	}
	return ""
}

// validHeaderName accepts RFC 9110 tokens without '_' (the gateway refuses underscores in
// request header names, so it never sends them either).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
