package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/admin"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

const adminToken = "test-admin-token-0123456789"

func reloadConfig(a, b, routeTimeout, extraRoute string) string {
	return fmt.Sprintf(`
admin: {listen: "127.0.0.1:9901", token: "%s"}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s", "%s"], max_conns_per_target: 4}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, timeout: %s}
%s`, adminToken, a, b, routeTimeout, extraRoute)
}

// adminServer runs the admin API of gw on an httptest server.
func adminServer(t *testing.T, gw *gateway, reg *prometheus.Registry) *httptest.Server {
	srv := httptest.NewServer(admin.Handler(gw.Gateway, reg, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv
}

func adminCall(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return resp.StatusCode, map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

// TestReloadUnderLoad reloads the configuration 20 times while 8 clients send requests
// continuously: no request may fail, client keep-alive connections stay open, and the upstream
// sees no new connections for targets present in both configurations.
func TestReloadUnderLoad(t *testing.T) {
	a := startUpstream(t, "a", nil)
	b := startUpstream(t, "b", nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(a.Addr, b.Addr, "5s", ""))
	reg := prometheus.NewRegistry()
	gw := startGateway(t, reloadConfig(a.Addr, b.Addr, "5s", ""), func(o *server.Options) {
		o.ConfigPath = path
		o.Registerer = reg
	})
	adm := adminServer(t, gw, reg)

	// Warm up: every client connection and both upstream pools exist before reloads start.
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	closedByGateway := &atomic.Int64{}
	transport := &http.Transport{MaxIdleConnsPerHost: 8, MaxConnsPerHost: 8}
	transport.DialContext = closeWatchingDialer(closedByGateway)
	c := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(fmt.Sprintf("%s/client%d/%d", gw.URL, i, n))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	// Each pool holds at most 4 connections; once both are full, any new upstream connection
	// could only come from a reload replacing a pool (load alone cannot add one). Full means
	// seen from both ends: the gateway counts a pool connection as soon as its connect returns,
	// but the upstream's accept loop counts it when it gets round to it, which on a busy machine
	// can be after the reloads have started.
	targets := gw.Snapshot().Upstreams["app"].Targets()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sa, sb := targets[0].Stats(), targets[1].Stats()
		if sa.OpenConns == 4 && sb.OpenConns == 4 && uint64(a.accepted.Load()) == sa.Dials && uint64(b.accepted.Load()) == sb.Dials {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: pools hold %d and %d connections of %d and %d dialled, the upstreams accepted %d and %d; want 4, 4 and every dial accepted",
				sa.OpenConns, sb.OpenConns, sa.Dials, sb.Dials, a.accepted.Load(), b.accepted.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	acceptedBefore := a.accepted.Load() + b.accepted.Load()

	for i := range 20 {
		// Alternate between a file reload and an API apply, changing the route each time.
		timeout := fmt.Sprintf("%ds", 5+i%3)
		extra := fmt.Sprintf("  - {name: extra%d, match: {path_prefix: /extra}, upstream: app}\n", i)
		cfg := reloadConfig(a.Addr, b.Addr, timeout, extra)
		if i%2 == 0 {
			write(cfg)
			if code, body := adminCall(t, "POST", adm.URL+"/reload", ""); code != 200 {
				t.Fatalf("reload %d: %d %v", i, code, body)
			}
		} else if code, body := adminCall(t, "PUT", adm.URL+"/config", cfg); code != 200 {
			t.Fatalf("apply %d: %d %v", i, code, body)
		}
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads", failed.Load(), failed.Load()+ok.Load())
	}
	if ok.Load() < 200 {
		t.Fatalf("only %d requests completed; the load did not run", ok.Load())
	}
	if got := a.accepted.Load() + b.accepted.Load(); got != acceptedBefore {
		t.Fatalf("upstreams accepted %d new connections during reloads of unchanged targets, want 0", got-acceptedBefore)
	}
	if n := closedByGateway.Load(); n != 0 {
		t.Fatalf("the gateway closed %d client keep-alive connections during reloads", n)
	}
	if v := gw.Snapshot().Version; v != 21 {
		t.Fatalf("config version %d, want 21", v)
	}
	t.Logf("%d requests, 0 failed, across 20 reloads", ok.Load())
}

func TestInvalidReloadKeepsRunningConfig(t *testing.T) {
	a := startUpstream(t, "a", nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "routes.yaml")
	good := reloadConfig(a.Addr, a.Addr+"0", "5s", "")
	good = strings.Replace(good, fmt.Sprintf(`["%s", "%s0"]`, a.Addr, a.Addr), fmt.Sprintf(`["%s"]`, a.Addr), 1)
	_ = os.WriteFile(path, []byte(good), 0o644)
	reg := prometheus.NewRegistry()
	gw := startGateway(t, good, func(o *server.Options) { o.ConfigPath = path; o.Registerer = reg })
	adm := adminServer(t, gw, reg)

	bad := strings.Replace(good, "upstream: app", "upstream: nope", 1) + "  - {name: app, match: {path_prefix: /x}, upstream: app, timeout: 5}\n"
	_ = os.WriteFile(path, []byte(bad), 0o644)
	code, body := adminCall(t, "POST", adm.URL+"/reload", "")
	if code != 400 {
		t.Fatalf("invalid reload: %d %v, want 400", code, body)
	}
	errs, _ := body["errors"].([]any)
	var texts []string
	for _, e := range errs {
		texts = append(texts, e.(map[string]any)["text"].(string))
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{`routes[0].upstream: undefined upstream "nope"`, `routes[1].name: duplicate route name "app"`, `routes[1].timeout: duration "5" has no unit`} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors lack %q:\n%s", want, joined)
		}
	}
	if !strings.Contains(joined, "routes.yaml:") {
		t.Errorf("errors do not name the file and line:\n%s", joined)
	}
	if r := get(t, gw.URL+"/still-served"); r.Status != 200 {
		t.Fatalf("after a rejected reload the old config does not serve: %d", r.Status)
	}
	if gw.Snapshot().Version != 1 || gw.LastReload().OK {
		t.Fatalf("version %d, last reload %+v", gw.Snapshot().Version, gw.LastReload())
	}
	// A restart-only setting is refused with its reason.
	moved := strings.Replace(good, `listen: "127.0.0.1:9901"`, `listen: "127.0.0.1:9902"`, 1)
	code, body = adminCall(t, "PUT", adm.URL+"/config", moved)
	if code != 400 || !strings.Contains(fmt.Sprint(body), "admin.listen: changing it needs a restart") {
		t.Fatalf("admin.listen change: %d %v", code, body)
	}
	// Metrics count the failures and keep the version.
	mresp, _ := http.Get(adm.URL + "/metrics")
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`archway_config_reloads_total{result="failure",source="api"} 2`,
		`archway_config_version 1`,
		`archway_config_last_reload_successful 0`,
	} {
		if !strings.Contains(string(mbody), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestAdminAPI(t *testing.T) {
	a := startUpstream(t, "a", nil)
	b := startUpstream(t, "b", nil)
	reg := prometheus.NewRegistry()
	cfg := reloadConfig(a.Addr, b.Addr, "5s", "")
	gw := startGateway(t, cfg, func(o *server.Options) { o.Registerer = reg })
	adm := adminServer(t, gw, reg)

	// Everything but /health and /metrics needs the token.
	for _, path := range []string{"/config", "/routes", "/upstreams"} {
		resp, _ := http.Get(adm.URL + path)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("GET %s without token: %d, want 401", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/health", "/metrics"} {
		resp, _ := http.Get(adm.URL + path)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
	}

	code, body := adminCall(t, "GET", adm.URL+"/config", "")
	if code != 200 || body["version"].(float64) != 1 || strings.Contains(body["config"].(string), adminToken) ||
		!strings.Contains(body["config"].(string), "[redacted]") {
		t.Fatalf("GET /config: %d %v", code, body)
	}

	// Dry run: a diff, nothing applied.
	changed := strings.Replace(cfg, "timeout: 5s", "timeout: 9s", 1)
	code, body = adminCall(t, "PUT", adm.URL+"/config?dry_run=true", changed)
	diff, _ := body["diff"].(string)
	if code != 200 || body["applied"] != false || !strings.Contains(diff, "-    timeout: 5s") || !strings.Contains(diff, "+    timeout: 9s") {
		t.Fatalf("dry run: %d %v", code, body)
	}
	if gw.Snapshot().Version != 1 {
		t.Fatal("a dry run changed the configuration")
	}
	code, body = adminCall(t, "PUT", adm.URL+"/config", changed)
	if code != 200 || body["applied"] != true || gw.Snapshot().Version != 2 || gw.Config().Routes[0].Timeout.D() != 9*time.Second {
		t.Fatalf("apply: %d %v", code, body)
	}

	for range 4 {
		get(t, gw.URL+"/x")
	}
	req, _ := http.NewRequest("GET", adm.URL+"/upstreams", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ups []struct {
		Name    string
		Balance string
		Targets []struct {
			Addr     string
			Health   string
			Requests uint64
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&ups)
	resp.Body.Close()
	if len(ups) != 1 || ups[0].Balance != "least_conn" || len(ups[0].Targets) != 2 ||
		ups[0].Targets[0].Health != "healthy" || ups[0].Targets[0].Requests+ups[0].Targets[1].Requests != 4 {
		t.Fatalf("/upstreams = %+v", ups)
	}
}

// closeWatchingDialer dials connections that count, in closedByPeer, each one the other end
// closed: a read that fails before this side closed it. Counting the client's dials instead
// also counts the connections Go's transport drops on its own: it reuses a connection only if
// the write of the last request is seen finished within 50 ms of its response
// (net/http's maxWriteWaitBeforeConnReuse), which a loaded machine misses now and then.
func closeWatchingDialer(closedByPeer *atomic.Int64) func(ctx context.Context, network, addr string) (netConn, error) {
	d := &netDialer{}
	return func(ctx context.Context, network, addr string) (netConn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &closeWatchingConn{netConn: c, closedByPeer: closedByPeer}, nil
	}
}

type closeWatchingConn struct {
	netConn
	closedByPeer *atomic.Int64
	closed       atomic.Bool // this side called Close
	counted      atomic.Bool
}

func (c *closeWatchingConn) Read(p []byte) (int, error) {
	n, err := c.netConn.Read(p)
	if err != nil && !c.closed.Load() && !c.counted.Swap(true) {
		c.closedByPeer.Add(1)
	}
	return n, err
}

func (c *closeWatchingConn) Close() error {
	c.closed.Store(true)
	return c.netConn.Close()
}
