package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type running struct {
	url  string
	logs *syncBuffer
	stop func() error
}

// start serves s on a real loopback socket until the test ends.
func start(t *testing.T, cfg server.Config, register func(s *server.Server)) *running {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	if cfg.Service == "" {
		cfg.Service = "test"
	}
	s := server.New(cfg)
	if register != nil {
		register(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{url: "http://" + ln.Addr().String(), logs: logs, stop: stop}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url string, body io.Reader, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

type errBody struct {
	Error     string `json:"error"`
	Field     string `json:"field"`
	RequestID string `json:"request_id"`
}

func decodeErr(t *testing.T, r response) errBody {
	t.Helper()
	var e errBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if e.Error == "" || e.RequestID == "" || e.RequestID != r.header.Get("X-Request-ID") {
		t.Fatalf("error body %s / X-Request-ID %q", r.body, r.header.Get("X-Request-ID"))
	}
	return e
}

func routes(s *server.Server) {
	s.Handle("GET", "/things/{id}", func(ctx *fasthttp.RequestCtx) error {
		id, err := api.PathInt64(ctx, "id")
		if err != nil {
			return err
		}
		return api.WriteJSON(ctx, 200, map[string]int64{"id": id})
	})
	s.Handle("POST", "/things", func(ctx *fasthttp.RequestCtx) error {
		var in struct {
			Name  string `json:"name"`
			Count int    `json:"count"`
		}
		if err := api.DecodeJSON(ctx, &in); err != nil {
			return err
		}
		return api.WriteJSON(ctx, 201, in)
	})
	s.Handle("GET", "/panic", func(*fasthttp.RequestCtx) error { panic("boom") })
	s.Handle("GET", "/fail", func(*fasthttp.RequestCtx) error { return errors.New("secret database detail") })
}

func TestErrorsAreJSONWithRequestID(t *testing.T) {
	r := start(t, server.Config{MaxBodyBytes: 1024}, routes)
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		want                     int
		wantField                string
	}{
		{name: "bad path param", method: "GET", path: "/things/abc", want: 400, wantField: "id"},
		{name: "unknown route", method: "GET", path: "/nope", want: 404},
		{name: "wrong method", method: "DELETE", path: "/things/1", want: 405},
		{name: "panic", method: "GET", path: "/panic", want: 500},
		{name: "internal error", method: "GET", path: "/fail", want: 500},
		{name: "empty body", method: "POST", path: "/things", want: 400, wantField: "body"},
		{name: "malformed body", method: "POST", path: "/things", body: `{"name":`, want: 400, wantField: "body"},
		{name: "wrong type", method: "POST", path: "/things", body: `{"name":"a","count":"x"}`, want: 400, wantField: "count"},
		{name: "trailing data", method: "POST", path: "/things", body: `{"name":"a"} {}`, want: 400, wantField: "body"},
		{name: "not an object", method: "POST", path: "/things", body: `[1]`, want: 400, wantField: "body"},
		{name: "oversized body", method: "POST", path: "/things", body: `{"name":"` + strings.Repeat("x", 2048) + `"}`, want: 413},
		{name: "gateway request id kept", method: "GET", path: "/nope", headers: map[string]string{"X-Request-ID": "gw-123"}, want: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, tc.method, r.url+tc.path, strings.NewReader(tc.body), tc.headers)
			if resp.status != tc.want {
				t.Fatalf("status = %d; want %d (%s)", resp.status, tc.want, resp.body)
			}
			e := decodeErr(t, resp)
			if e.Field != tc.wantField {
				t.Fatalf("field = %q; want %q (%s)", e.Field, tc.wantField, e.Error)
			}
			if tc.wantField != "" && !strings.HasPrefix(e.Error, tc.wantField+": ") {
				t.Fatalf("message %q does not name the field", e.Error)
			}
			if id := tc.headers["X-Request-ID"]; id != "" && e.RequestID != id {
				t.Fatalf("request id = %q; want %q", e.RequestID, id)
			}
			if strings.Contains(string(resp.body), "secret") || strings.Contains(string(resp.body), "boom") {
				t.Fatalf("internal detail leaked: %s", resp.body)
			}
		})
	}
	// The server still works after a panic.
	if resp := do(t, "GET", r.url+"/things/7", nil, nil); resp.status != 200 || string(resp.body) != "{\"id\":7}\n" {
		t.Fatalf("after panic: %d %s", resp.status, resp.body)
	}
}

func TestRequestIDs(t *testing.T) {
	r := start(t, server.Config{}, routes)
	a := do(t, "GET", r.url+"/things/1", nil, nil).header.Get("X-Request-ID")
	b := do(t, "GET", r.url+"/things/1", nil, nil).header.Get("X-Request-ID")
	if len(a) != 32 || a == b {
		t.Fatalf("generated ids %q, %q; want distinct 32-hex ids", a, b)
	}
	if got := do(t, "GET", r.url+"/things/1", nil, map[string]string{"X-Request-ID": "abc-1"}).header.Get("X-Request-ID"); got != "abc-1" {
		t.Fatalf("echoed id = %q", got)
	}
	long := strings.Repeat("a", 200)
	if got := do(t, "GET", r.url+"/things/1", nil, map[string]string{"X-Request-ID": long}).header.Get("X-Request-ID"); got == long || len(got) != 32 {
		t.Fatalf("oversized id was kept: %q", got)
	}
}

func TestMetricsUseRoutePattern(t *testing.T) {
	r := start(t, server.Config{Service: "things"}, routes)
	do(t, "GET", r.url+"/things/123", nil, nil)
	do(t, "GET", r.url+"/things/456", nil, nil)
	do(t, "GET", r.url+"/no/such/path/789", nil, nil)
	do(t, "BREW", r.url+"/things/1", nil, nil)
	m := do(t, "GET", r.url+"/metrics", nil, nil)
	text := string(m.body)
	for _, want := range []string{
		`http_requests_total{method="GET",route="/things/{id}",service="things",status="200"} 2`,
		`http_requests_total{method="GET",route="unmatched",service="things",status="404"} 1`,
		`http_requests_total{method="OTHER",route="unmatched",service="things",status="405"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/things/{id}",service="things"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, raw := range []string{"123", "456", "789", "BREW"} {
		if strings.Contains(text, `"/things/`+raw) || strings.Contains(text, raw+`"`) {
			t.Errorf("a raw path or method (%s) became a label", raw)
		}
	}
}

func TestAccessLogIsJSON(t *testing.T) {
	r := start(t, server.Config{}, routes)
	do(t, "GET", r.url+"/things/9", nil, map[string]string{"X-Request-ID": "log-me"})
	var line map[string]any
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, `"log-me"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no access log line for the request:\n%s", r.logs.String())
	}
	if line["msg"] != "request" || line["route"] != "/things/{id}" || line["path"] != "/things/9" ||
		line["status"] != float64(200) || line["method"] != "GET" {
		t.Fatalf("log line = %v", line)
	}
}

func TestHealth(t *testing.T) {
	var mu sync.Mutex
	var healthErr error
	r := start(t, server.Config{Health: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return healthErr }}, nil)
	if resp := do(t, "GET", r.url+"/health", nil, nil); resp.status != 200 || !strings.Contains(string(resp.body), `"status":"ok"`) {
		t.Fatalf("healthy: %d %s", resp.status, resp.body)
	}
	mu.Lock()
	healthErr = errors.New("dial tcp: connection refused")
	mu.Unlock()
	resp := do(t, "GET", r.url+"/health", nil, nil)
	if resp.status != 503 {
		t.Fatalf("unhealthy: %d %s", resp.status, resp.body)
	}
	decodeErr(t, resp)
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	r := start(t, server.Config{ShutdownTimeout: 5 * time.Second}, func(s *server.Server) {
		s.Handle("GET", "/slow", func(ctx *fasthttp.RequestCtx) error {
			close(entered)
			<-release
			return api.WriteJSON(ctx, 200, "done")
		})
	})
	got := make(chan response, 1)
	go func() { got <- do(t, "GET", r.url+"/slow", nil, nil) }()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if resp := <-got; resp.status != 200 || string(resp.body) != "\"done\"\n" {
		t.Fatalf("in-flight request: %d %s", resp.status, resp.body)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v; want nil after a clean shutdown", err)
	}
	if _, err := http.Get(r.url + "/health"); err == nil {
		t.Fatal("server still accepts connections after shutdown")
	}
}

// A trailing slash names the same resource: the same answer, never a redirect (behind a gateway
// that strips /api, a redirect to the service's own path would leave the API).
func TestTrailingSlashIsTheSameResource(t *testing.T) {
	r := start(t, server.Config{Service: "things"}, routes)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/things/7", "", 200},
		{"GET", "/things/7/", "", 200},
		{"GET", "/things/7//", "", 200},
		{"POST", "/things", `{"name":"a","count":1}`, 201},
		{"POST", "/things/", `{"name":"a","count":1}`, 201},
		{"GET", "/things/", "", 405},  // as /things: POST only
		{"GET", "/THINGS/7", "", 404}, // paths are case-sensitive, and not redirected either
		{"GET", "/", "", 404},
	} {
		req, _ := http.NewRequest(tc.method, r.url+tc.path, strings.NewReader(tc.body))
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Location") != "" {
			t.Errorf("%s %s: %d Location %q, want %d and no Location: %s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.want, body)
		}
		if tc.want == 200 && string(body) != `{"id":7}`+"\n" && string(body) != `{"id":7}` {
			t.Errorf("%s %s: body %q", tc.method, tc.path, body)
		}
	}
	if m := do(t, "GET", r.url+"/metrics", nil, nil); !strings.Contains(string(m.body), `route="/things/{id}",service="things",status="200"} 3`) {
		t.Errorf("the trailing-slash requests are not counted under their route:\n%s", m.body)
	}
}
