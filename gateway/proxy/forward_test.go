package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/router"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

// seen is what the test upstream received.
type seen struct {
	URI     string            `json:"uri"`
	Headers map[string]string `json:"headers"`
}

// startEcho serves, over a real socket, a JSON description of each request it gets.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		s := seen{URI: string(ctx.Request.RequestURI()), Headers: map[string]string{}}
		for k, v := range ctx.Request.Header.All() {
			s.Headers[string(k)] = string(v)
		}
		ctx.Response.Header.Set("Connection-Test", "x")
		ctx.Response.Header.Set("X-Upstream", "echo")
		ctx.SetContentType("application/json")
		_ = json.NewEncoder(ctx).Encode(s)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// startProxy compiles the routes of yaml into a snapshot the way the server does (upstreams from
// the registry, one Forwarder per route) and serves it over a real socket.
func startProxy(t *testing.T, yaml string) string {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := upstream.NewRegistry(nil, logger)
	stats := metrics.NewRegistry()
	s := &Snapshot{Config: cfg, Upstreams: map[string]*upstream.Upstream{}, MaxBodyBytes: cfg.Server.MaxBodyBytes.Bytes(),
		HealthPath: []byte(cfg.Server.HealthPath), Unmatched: stats.Route("_none"), Tunnels: NewTunnels(t.Context(), nil)}
	for name, uc := range cfg.Upstreams {
		u, err := reg.Build(name, uc, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Upstreams[name] = u
	}
	var entries []router.Route[*Route]
	for _, rc := range cfg.Routes {
		r := &Route{Name: rc.Name, Upstream: s.Upstreams[rc.Upstream], Timeout: rc.Timeout.D(), Stats: stats.Route(rc.Name)}
		if rc.StripPrefix != "" {
			r.StripPrefix = []byte(config.CleanPrefix(rc.StripPrefix))
		}
		if rc.AddPrefix != "" {
			r.AddPrefix = []byte(config.CleanPrefix(rc.AddPrefix))
		}
		for k, v := range rc.Headers.Request.Set {
			r.RequestHeaders.Set = append(r.RequestHeaders.Set, KV{Key: []byte(http.CanonicalHeaderKey(k)), Value: []byte(v)})
		}
		for _, k := range rc.Headers.Request.Remove {
			r.RequestHeaders.Remove = append(r.RequestHeaders.Remove, []byte(http.CanonicalHeaderKey(k)))
		}
		r.Handler = &Forwarder{Route: r}
		s.Routes = append(s.Routes, r)
		entries = append(entries, router.Route[*Route]{Path: rc.Match.Path, Prefix: rc.Match.PathPrefix, Value: r})
	}
	if s.Table, err = router.New(entries); err != nil {
		t.Fatal(err)
	}
	e := NewEntry(s, logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: e.Handle, ErrorHandler: e.HandleParseError, StreamRequestBody: true, NoDefaultServerHeader: true}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); reg.Commit(nil) })
	return "http://" + ln.Addr().String()
}

func TestForwarding(t *testing.T) {
	echo := startEcho(t)
	// A port that refuses connections: a listener opened and closed.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	url := startProxy(t, `
access_log: {enabled: false}
upstreams:
  echo: {targets: ["`+echo+`"]}
  dead: {targets: ["`+deadAddr+`"], max_fails: 0}
routes:
  - {name: plain, match: {path_prefix: /plain}, upstream: echo}
  - {name: strip, match: {path_prefix: /api}, strip_prefix: /api, upstream: echo}
  - {name: add, match: {path_prefix: /v1}, strip_prefix: /v1, add_prefix: /internal/v1, upstream: echo}
  - name: headers
    match: {path_prefix: /hdr}
    upstream: echo
    headers: {request: {set: {X-Env: test}, remove: [X-Secret]}}
  - {name: dead, match: {path_prefix: /dead}, upstream: dead}
`)
	for _, tc := range []struct {
		name, path string
		header     map[string]string
		status     int
		uri        string
		upstream   map[string]string // headers the upstream must see ("" for absent)
	}{
		{name: "path and query pass through", path: "/plain/a?b=1&c", status: 200, uri: "/plain/a?b=1&c"},
		{name: "prefix stripped", path: "/api/products/7?x=1", status: 200, uri: "/products/7?x=1",
			upstream: map[string]string{"X-Forwarded-Prefix": "/api"}},
		{name: "prefix stripped to the root", path: "/api", status: 200, uri: "/"},
		{name: "prefix replaced", path: "/v1/users", status: 200, uri: "/internal/v1/users"},
		{name: "hop-by-hop and named headers removed", path: "/plain/h",
			header: map[string]string{"Connection": "X-Drop", "X-Drop": "1", "Keep-Alive": "timeout=5", "X-Keep": "1"},
			status: 200, uri: "/plain/h", upstream: map[string]string{"X-Drop": "", "Keep-Alive": "", "X-Keep": "1"}},
		{name: "forwarding headers replaced, not trusted from the client", path: "/plain/f",
			header: map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.9"},
			status: 200, uri: "/plain/f", upstream: map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Proto": "http"}},
		{name: "route header ops", path: "/hdr", header: map[string]string{"X-Secret": "s", "X-Env": "prod"},
			status: 200, uri: "/hdr", upstream: map[string]string{"X-Secret": "", "X-Env": "test"}},
		{name: "no route", path: "/nowhere", status: 404},
		{name: "upstream refuses connections", path: "/dead/x", status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, url+tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status != 200 {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(body, &e) != nil || e.Error == "" || strings.Contains(string(body), deadAddr) {
					t.Fatalf("error body %s: want JSON with an error and no upstream address", body)
				}
				return
			}
			var s seen
			if err := json.Unmarshal(body, &s); err != nil {
				t.Fatalf("upstream answer %s: %v", body, err)
			}
			if s.URI != tc.uri {
				t.Errorf("upstream saw %q, want %q", s.URI, tc.uri)
			}
			for k, want := range tc.upstream {
				if got := s.Headers[k]; got != want {
					t.Errorf("upstream header %s = %q, want %q", k, got, want)
				}
			}
			if resp.Header.Get("Connection-Test") != "x" || resp.Header.Get("X-Upstream") != "echo" {
				t.Errorf("response headers %v", resp.Header)
			}
		})
	}
}
