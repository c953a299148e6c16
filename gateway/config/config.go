// Package config loads, defaults and validates routes.yaml.
//
// The lifecycle is Load (or Parse) → defaults applied → validated. A *Config that Load returns
// is complete and valid; callers treat it as immutable and never modify it, so one value can be
// shared by the running gateway, the admin API and a reload in progress.
//
// Every problem is reported at once, each with file:line:column and the field path, e.g.
//
//	routes.yaml:14:15: routes[1].upstream: undefined upstream "prodcts" (did you mean "products"?)
//
// This package is a leaf: it imports no other Archway package.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole of routes.yaml. See docs/configuration.md for every field and default.
type Config struct {
	Server    Server               `yaml:"server"`
	Admin     Admin                `yaml:"admin"`
	AccessLog AccessLog            `yaml:"access_log"`
	Upstreams map[string]*Upstream `yaml:"upstreams"`
	Routes    []*Route             `yaml:"routes"`
	Redis     Redis                `yaml:"redis,omitempty"`
	// Consul is the agent upstreams with a consul section discover their targets from.
	Consul *Consul `yaml:"consul,omitempty"`
	// JWT is how tokens are verified for routes with auth; nil when no route verifies tokens.
	JWT *JWT `yaml:"jwt,omitempty"`

	// File is where the configuration was read from, for messages.
	File      string              `yaml:"-"`
	positions map[string]Position // field path → where it was written
}

// Server configures the public listener.
type Server struct {
	Listen         string   `yaml:"listen"`
	ReadTimeout    Duration `yaml:"read_timeout"`
	WriteTimeout   Duration `yaml:"write_timeout"`
	IdleTimeout    Duration `yaml:"idle_timeout"`
	MaxHeaderBytes Size     `yaml:"max_header_bytes"`
	MaxBodyBytes   Size     `yaml:"max_body_bytes"`
	TrustedProxies []CIDR   `yaml:"trusted_proxies,omitempty"`
	ShutdownGrace  Duration `yaml:"shutdown_grace"`
	// EncodedSlashes decides what a %2F in a path means: "keep" leaves it encoded, inside its
	// segment (it never splits segments for matching), "reject" answers 400.
	EncodedSlashes EncodedSlashes `yaml:"encoded_slashes"`
	// HealthPath is answered by the gateway itself with 200, before any route.
	HealthPath string `yaml:"health_path"`
	// SecurityHeaders are added to every response that does not carry them already. Left out, it
	// is the original nginx set; an empty mapping turns them all off. Routes override them with
	// headers.response.set and headers.response.remove.
	SecurityHeaders map[string]string `yaml:"security_headers"`
	// MaxConnections and MaxConnectionsPerIP cap client connections (see connections.go).
	MaxConnections      int `yaml:"max_connections"`
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// IdleParkAfter parks idle keep-alive connections (see park.go); 0 is off. Left out, it is
	// DefaultIdleParkAfter on Linux.
	IdleParkAfter Duration `yaml:"idle_park_after,omitempty"`
	// WriteAndWait writes keep-alive responses as the connection starts waiting (writewait.go); 0 is off.
	WriteAndWait Duration `yaml:"write_and_wait,omitempty"`
	// Listeners replaces Listen with any number of listeners, plain or TLS (see listeners.go).
	Listeners []Listener `yaml:"listeners,omitempty"`
	// HTTP2 is the HTTP/2 settings of every listener speaking it (see http2.go).
	HTTP2 HTTP2 `yaml:"http2"`
	// Tracing exports OpenTelemetry traces (tracing.go); nil is off.
	Tracing *Tracing `yaml:"tracing,omitempty"`
}

// Admin configures the admin API listener.
type Admin struct {
	Listen string `yaml:"listen"`
	Token  Secret `yaml:"token,omitempty"`
	TLS    *TLS   `yaml:"tls,omitempty"`
}

// AccessLog configures the one-line-per-request JSON log.
type AccessLog struct {
	Enabled *bool  `yaml:"enabled"`
	Output  string `yaml:"output"` // stdout, stderr or a file path
	// Buffer is the size of each of the log's four buffers; Flush bounds how long a line waits
	// in one that is not full (accesslog.go).
	Buffer Size     `yaml:"buffer"`
	Flush  Duration `yaml:"flush"`
}

// On reports whether access logging is enabled.
func (a AccessLog) On() bool { return a.Enabled != nil && *a.Enabled }

// Upstream is a named set of targets and how to reach them.
type Upstream struct {
	Balance           string   `yaml:"balance"`
	Targets           []Target `yaml:"targets"`
	MaxFails          int      `yaml:"max_fails"`
	FailTimeout       Duration `yaml:"fail_timeout"`
	ConnectTimeout    Duration `yaml:"connect_timeout"`
	Timeout           Duration `yaml:"timeout"`
	MaxConnsPerTarget int      `yaml:"max_conns_per_target"`
	QueueTimeout      Duration `yaml:"queue_timeout"`
	IdleConnTimeout   Duration `yaml:"idle_conn_timeout"`
	MaxResponseBytes  Size     `yaml:"max_response_bytes"`
	// Outlier ejects a target that answers with bursts of 5xx (passive health covers connection
	// failures through max_fails).
	Outlier Outlier `yaml:"outlier"`
	// HealthCheck probes every target; an unhealthy target gets no traffic until it recovers.
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`
	// Consul discovers the targets instead of listing them (exclusive with Targets).
	Consul *UpstreamConsul `yaml:"consul,omitempty"`
	// Buffering frees the upstream connection before a slow client has read the response.
	Buffering Buffering `yaml:"buffering"`
	// TLS speaks HTTPS to the targets (upstream_tls.go); nil speaks plain HTTP.
	TLS *UpstreamTLS `yaml:"tls,omitempty"`
	// Protocol is http1, h2c or h2 (upstream_protocol.go).
	Protocol UpstreamProtocol `yaml:"protocol,omitempty"`
}

// Consul is the Consul agent the gateway talks to.
type Consul struct {
	Address    string `yaml:"address"`
	Token      Secret `yaml:"token,omitempty"`
	Datacenter string `yaml:"datacenter,omitempty"`
	// Register, when set, registers the gateway itself as a service.
	Register *ConsulRegister `yaml:"register,omitempty"`
}

// ConsulRegister registers the gateway in Consul with a health check on its health path.
type ConsulRegister struct {
	Service string   `yaml:"service"`
	ID      string   `yaml:"id,omitempty"`
	Address string   `yaml:"address"` // where others reach the gateway
	Tags    []string `yaml:"tags,omitempty"`
}

// UpstreamConsul selects an upstream's targets from Consul: the passing instances of a service.
type UpstreamConsul struct {
	Service    string   `yaml:"service"`
	Tags       []string `yaml:"tags,omitempty"`
	Datacenter string   `yaml:"datacenter,omitempty"`
	// OnEmpty is what happens when Consul reports zero passing instances: keep_last keeps the
	// last set for KeepLastFor, fail serves none (503).
	OnEmpty     string   `yaml:"on_empty"`
	KeepLastFor Duration `yaml:"keep_last_for"`
}

// Outlier configures ejection on consecutive 5xx responses.
type Outlier struct {
	Consecutive5xx     int      `yaml:"consecutive_5xx"` // 0 turns it off
	EjectionTime       Duration `yaml:"ejection_time"`
	MaxEjectionPercent int      `yaml:"max_ejection_percent"`
}

// HealthCheck configures active health checking of an upstream's targets.
type HealthCheck struct {
	Path      string   `yaml:"path"`
	Interval  Duration `yaml:"interval"`
	Timeout   Duration `yaml:"timeout"`
	Healthy   int      `yaml:"healthy"`   // consecutive successes that bring a target back
	Unhealthy int      `yaml:"unhealthy"` // consecutive failures that take it out
	// GRPCService, when set, probes with grpc.health.v1 Check for that service ("" is the
	// server as a whole) instead of GET path (upstream_protocol.go).
	GRPCService *string `yaml:"grpc_service,omitempty"`
}

// Route maps matching requests to an upstream, or to files (Static). Exactly one of Upstream and
// Static is set.
type Route struct {
	Name        string  `yaml:"name"`
	Match       Match   `yaml:"match"`
	StripPrefix string  `yaml:"strip_prefix,omitempty"`
	AddPrefix   string  `yaml:"add_prefix,omitempty"`
	Upstream    string  `yaml:"upstream,omitempty"`
	Static      *Static `yaml:"static,omitempty"`
	// Respond answers the route's requests directly (Envoy's direct_response), e.g. a 404 for
	// unknown API paths that would otherwise reach a catch-all route.
	Respond *Respond `yaml:"respond,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty"`
	// Retries is how many other targets a failed request may be tried on (see docs).
	Retries int     `yaml:"retries"`
	Headers Headers `yaml:"headers,omitempty"`
	// Auth, CORS and Compression are the route's edge policies; nil when it has none.
	Auth        *Auth        `yaml:"auth,omitempty"`
	CORS        *CORS        `yaml:"cors,omitempty"`
	Compression *Compression `yaml:"compression,omitempty"`
	// RateLimit and Cache are the route's policies; nil when it has none.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty"`
	Cache     *Cache     `yaml:"cache,omitempty"`
	// WebSocket lets GET requests upgrade to WebSocket on this route; each upgrade gets its own
	// upstream connection and a tunnel.
	WebSocket *WebSocket `yaml:"websocket,omitempty"`
	// Redirects rewrites the upstream's Location, Content-Location, Refresh and Set-Cookie
	// (redirects.go); rewrite by default where strip_prefix or add_prefix change the path.
	Redirects *Redirects `yaml:"redirects,omitempty"`
	// Access, ForwardAuth, Redirect, Rewrite and Split are defined in their own files.
	Access      *Access      `yaml:"access,omitempty"`
	ForwardAuth *ForwardAuth `yaml:"forward_auth,omitempty"`
	Redirect    *Redirect    `yaml:"redirect,omitempty"`
	Rewrite     *Rewrite     `yaml:"rewrite,omitempty"`
	Split       *Split       `yaml:"split,omitempty"`
	// Tracing is the route's own sampling (tracing.go).
	Tracing *RouteTracing `yaml:"tracing,omitempty"`
}

// Respond is a direct answer. Without a body, a status of 400 or more gets the gateway's JSON
// error body.
type Respond struct {
	Status      int    `yaml:"status"`
	Body        string `yaml:"body,omitempty"`
	ContentType string `yaml:"content_type,omitempty"`
}

// WebSocket configures upgrades on a route: "websocket: true", or a mapping of these fields.
type WebSocket struct {
	Enabled         bool     `yaml:"enabled"`
	IdleTimeout     Duration `yaml:"idle_timeout"`
	MaxMessageBytes Size     `yaml:"max_message_bytes"`
	// CloseGrace is how long open tunnels survive a reload that removes their route or target
	// before they are closed with code 1001.
	CloseGrace Duration `yaml:"close_grace"`
}

// Match selects requests. Exactly one of Path (exact) and PathPrefix is set; Host and Methods
// narrow it further when set.
type Match struct {
	Path       string   `yaml:"path,omitempty"`
	PathPrefix string   `yaml:"path_prefix,omitempty"`
	Host       string   `yaml:"host,omitempty"`
	Methods    []string `yaml:"methods,omitempty"`
	Listeners  []string `yaml:"listeners,omitempty"` // names; empty means every listener
}

// Headers changes request headers on the way to the upstream and response headers on the way back.
type Headers struct {
	Request  HeaderOps `yaml:"request,omitempty"`
	Response HeaderOps `yaml:"response,omitempty"`
}

// HeaderOps are applied in the order remove, set, add. Set replaces every existing copy.
type HeaderOps struct {
	Set    map[string]string `yaml:"set,omitempty"`
	Add    map[string]string `yaml:"add,omitempty"`
	Remove []string          `yaml:"remove,omitempty"`
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// resolvePaths makes the relative file paths of a loaded file relative to its directory, so the
// file means the same wherever the gateway is started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if out := c.AccessLog.Output; out != "stdout" && out != "stderr" {
		c.AccessLog.Output = abs(out)
	}
	for _, r := range c.Routes {
		if r.Static != nil {
			r.Static.Root = abs(r.Static.Root)
		}
	}
	c.resolveListenerPaths(abs)
	c.resolveUpstreamTLSPaths(abs)
}

// Parse defaults and validates a configuration held in memory; file names it in messages.
// Environment references (${NAME}, ${NAME:-default}) are expanded from the process environment.
func Parse(data []byte, file string) (*Config, error) {
	return ParseWithEnv(data, file, lookupEnvDefault)
}

// ParseUpdate parses a configuration meant to replace running (the admin API's PUT /config): a
// secret written as "[redacted]", as GET /config shows it, keeps the running value.
func ParseUpdate(data []byte, file string, running *Config) (*Config, error) {
	return parse(data, file, lookupEnvDefault, running.secrets())
}

// secrets returns the configuration's secrets by field path.
func (c *Config) secrets() map[string]string {
	m := map[string]string{"admin.token": string(c.Admin.Token), "redis.password": string(c.Redis.Password)}
	if c.Consul != nil {
		m["consul.token"] = string(c.Consul.Token)
	}
	if c.JWT != nil {
		m["jwt.secret"] = string(c.JWT.Secret)
	}
	return m
}

// ParseWithEnv is Parse with the environment given as a lookup function.
func ParseWithEnv(data []byte, file string, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parse(data, file, lookupEnv, nil)
}

func parse(data []byte, file string, lookupEnv func(string) (string, bool), keepSecrets map[string]string) (*Config, error) {
	errs := &ErrorList{file: file}
	cfg := &Config{File: file, positions: map[string]Position{}}

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			errs.add(Position{}, "", "the configuration is empty")
		} else {
			errs.add(yamlErrorPosition(err), "", yamlErrorMessage(err))
		}
		return nil, errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs.add(Position{extra.Line, extra.Column}, "", "more than one YAML document; routes.yaml holds exactly one")
		return nil, errs
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		errs.add(Position{}, "", "the configuration is empty")
		return nil, errs
	}
	d := &decoder{errs: errs, positions: cfg.positions, lookupEnv: lookupEnv, keepSecrets: keepSecrets}
	d.decode(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
	decodeErrs := len(errs.errs)
	// Validate even when some fields failed to decode, so one run reports every problem; a
	// field that failed to decode is left at its zero value, and what validation would say
	// about that zero value is noise, so such follow-on errors are dropped.
	cfg.applyDefaults()
	cfg.validate(errs)
	if decodeErrs > 0 {
		errs.errs = dropFollowOn(errs.errs, decodeErrs)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// dropFollowOn removes validation errors (those after the first n) about a field, or inside a
// field, that already has a decoding error.
func dropFollowOn(errs []*Error, n int) []*Error {
	out := errs[:n]
	for _, v := range errs[n:] {
		followOn := false
		for _, d := range errs[:n] {
			if v.Path == d.Path || strings.HasPrefix(v.Path, d.Path+".") || strings.HasPrefix(v.Path, d.Path+"[") ||
				strings.HasPrefix(d.Path, v.Path+".") || strings.HasPrefix(d.Path, v.Path+"[") {
				followOn = true
				break
			}
		}
		if !followOn {
			out = append(out, v)
		}
	}
	return out
}

// Position returns where the field at path (e.g. "routes[1].upstream") was written, or the
// position of its nearest written parent, or the zero Position.
func (c *Config) Position(path string) Position {
	for path != "" {
		if p, ok := c.positions[path]; ok {
			return p
		}
		path = parentPath(path)
	}
	return Position{}
}

func parentPath(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case '.':
			return path[:i]
		case '[':
			return path[:i]
		}
	}
	return ""
}

// Redacted renders the effective configuration (defaults filled in) as YAML with secrets
// replaced by "[redacted]". It is what the admin API shows and what diffs compare.
func (c *Config) Redacted() []byte {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		// Every field type marshals; failing here is a programming error.
		panic(fmt.Sprintf("config: marshal: %v", err))
	}
	_ = enc.Close()
	return buf.Bytes()
}

// Digest is a short stable hash of the effective configuration, secrets included (so rotating
// a token is a change), for telling versions apart.
func (c *Config) Digest() string {
	raw := *c
	raw.Admin.Token = ""
	raw.Redis.Password = ""
	var consulToken Secret
	if c.Consul != nil {
		consul := *c.Consul
		consulToken, consul.Token = consul.Token, ""
		raw.Consul = &consul
	}
	var jwtSecret Secret
	if c.JWT != nil {
		jwt := *c.JWT
		jwtSecret, jwt.Secret = jwt.Secret, ""
		raw.JWT = &jwt
	}
	sum := sha256.New()
	sum.Write(raw.Redacted())
	sum.Write([]byte(c.Admin.Token))
	sum.Write([]byte{0})
	sum.Write([]byte(c.Redis.Password))
	sum.Write([]byte{0})
	sum.Write([]byte(consulToken))
	sum.Write([]byte{0})
	sum.Write([]byte(jwtSecret))
	return hex.EncodeToString(sum.Sum(nil))[:12]
}

// RouteByName returns the route named name, or nil.
func (c *Config) RouteByName(name string) *Route {
	for _, r := range c.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// yamlErrorPosition extracts the line yaml.v3 names. It is the line where the enclosing block
// starts rather than the offending character, so the column is left out.
func yamlErrorPosition(err error) Position {
	var line int
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		return Position{Line: line}
	}
	return Position{}
}

func yamlErrorMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			msg = rest
		}
	}
	return "invalid YAML: " + msg
}
