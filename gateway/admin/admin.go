// Package admin serves the admin API: the effective configuration, reloads (from the file or a
// YAML body, with a dry run that shows the diff), the routes and the live state of every
// upstream target, plus /health and /metrics. It uses net/http: nothing here is on the request
// path of proxied traffic.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/archway-gateway/archway/discovery"
	"github.com/archway-gateway/archway/gateway/cache"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gateway is what the admin API needs from the running gateway.
type Gateway interface {
	Snapshot() *proxy.Snapshot
	LastReload() server.ReloadResult
	Reload(source string) (server.ReloadResult, error)
	Apply(cfg *config.Config, source string) (server.ReloadResult, error)
	Check(cfg *config.Config) error
	DiscoveryState(upstream string) (discovery.State, bool)
}

var _ Gateway = (*server.Gateway)(nil)

// maxConfigBody bounds a PUT /config body.
const maxConfigBody = 1 << 20

// CachePurger removes cached responses: of every route (route ""), or of one, only under
// pathPrefix when it is set.
type CachePurger interface {
	Purge(ctx context.Context, route, pathPrefix string) (cache.PurgeResult, error)
}

var _ CachePurger = (*cache.Registry)(nil)

// Option adds an optional part to the admin API.
type Option func(*api)

// WithCache serves DELETE /cache with p.
func WithCache(p CachePurger) Option { return func(a *api) { a.cache = p } }

// Handler returns the admin API. gatherer serves /metrics.
func Handler(g Gateway, gatherer prometheus.Gatherer, logger *slog.Logger, opts ...Option) http.Handler {
	a := &api{g: g, logger: logger}
	for _, o := range opts {
		o(a)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /config", a.auth(a.getConfig))
	mux.HandleFunc("PUT /config", a.auth(a.putConfig))
	mux.HandleFunc("POST /reload", a.auth(a.reload))
	mux.HandleFunc("GET /routes", a.auth(a.routes))
	mux.HandleFunc("GET /upstreams", a.auth(a.upstreams))
	if a.cache != nil {
		mux.HandleFunc("DELETE /cache", a.auth(a.purgeCache))
	}
	return mux
}

type api struct {
	g      Gateway
	logger *slog.Logger
	cache  CachePurger
}

// purgeCache removes cached responses: DELETE /cache (everything), ?route=NAME (one route),
// and &prefix=/PATH (only paths starting with it; with or without a route).
func (a *api) purgeCache(w http.ResponseWriter, r *http.Request) {
	route, prefix := r.URL.Query().Get("route"), r.URL.Query().Get("prefix")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "prefix must start with /"})
		return
	}
	res, err := a.cache.Purge(r.Context(), route, prefix)
	switch {
	case errors.Is(err, cache.ErrUnknownRoute):
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("route %q has no cache", route)})
		return
	case err != nil:
		// Memory is purged; the shared tier may still hold entries until they expire.
		a.logger.Warn("cache purge: redis tier", "error", err.Error())
		writeJSON(w, http.StatusBadGateway, struct {
			errorBody
			Result cache.PurgeResult `json:"result"`
		}{errorBody{Error: "memory purged; the Redis tier failed: " + err.Error()}, res})
		return
	}
	if res.Routes == nil {
		res.Routes = []string{}
	}
	writeJSON(w, http.StatusOK, res)
}

// auth requires "Authorization: Bearer <admin.token>" when a token is configured. The token is
// read from the live configuration, so rotating it takes effect at the next reload.
func (a *api) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := a.g.Snapshot().Config.Admin.Token.Reveal()
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="archway-admin"`)
				writeJSON(w, http.StatusUnauthorized, errorBody{Error: "missing or wrong admin token"})
				return
			}
		}
		h(w, r)
	}
}

type errorBody struct {
	Error  string        `json:"error"`
	Errors []configError `json:"errors,omitempty"`
}

type configError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"`
}

func configErrors(err error) []configError {
	var list *config.ErrorList
	if !errors.As(err, &list) {
		return []configError{{Message: err.Error(), Text: err.Error()}}
	}
	var out []configError
	for _, e := range list.Errors() {
		out = append(out, configError{File: e.File, Line: e.Pos.Line, Column: e.Pos.Column, Path: e.Path, Message: e.Msg, Text: e.Error()})
	}
	return out
}

type configResponse struct {
	Version    uint64              `json:"version"`
	Digest     string              `json:"digest"`
	LastReload server.ReloadResult `json:"last_reload"`
	Config     string              `json:"config"`
}

func (a *api) getConfig(w http.ResponseWriter, r *http.Request) {
	s := a.g.Snapshot()
	if r.URL.Query().Get("format") == "yaml" {
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("X-Archway-Config-Version", fmt.Sprint(s.Version))
		_, _ = w.Write(s.Config.Redacted())
		return
	}
	writeJSON(w, http.StatusOK, configResponse{
		Version: s.Version, Digest: s.Config.Digest(), LastReload: a.g.LastReload(), Config: string(s.Config.Redacted()),
	})
}

type applyResponse struct {
	Applied bool                 `json:"applied"`
	DryRun  bool                 `json:"dry_run"`
	Result  *server.ReloadResult `json:"result,omitempty"`
	Diff    string               `json:"diff"`
}

// putConfig applies a YAML body as the running configuration, or with ?dry_run=true only
// validates it and returns the diff against the running one. The file on disk is not touched:
// a later POST /reload or SIGHUP re-reads it.
func (a *api) putConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reading the body: " + err.Error()})
		return
	}
	if len(body) > maxConfigBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "configuration over 1 MiB"})
		return
	}
	// A configuration fetched from GET /config carries "[redacted]" for its secrets: that means
	// "keep the running value", so fetch, edit, PUT works without handling secrets.
	running := a.g.Snapshot().Config
	cfg, err := config.ParseUpdate(body, "PUT /config", running)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid configuration; the running configuration stays", Errors: configErrors(err)})
		return
	}
	diff := config.Diff(running, cfg)
	if r.URL.Query().Get("dry_run") == "true" {
		if err := a.g.Check(cfg); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "configuration cannot be applied", Errors: configErrors(err)})
			return
		}
		writeJSON(w, http.StatusOK, applyResponse{DryRun: true, Diff: diff})
		return
	}
	res, err := a.g.Apply(cfg, "api")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "configuration cannot be applied; the running configuration stays", Errors: configErrors(err)})
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Applied: true, Result: &res, Diff: diff})
}

func (a *api) reload(w http.ResponseWriter, _ *http.Request) {
	res, err := a.g.Reload("api")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, struct {
			errorBody
			Result server.ReloadResult `json:"result"`
		}{errorBody{Error: "reload rejected; the running configuration stays", Errors: configErrors(err)}, res})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type routeView struct {
	Name        string   `json:"name"`
	Path        string   `json:"path,omitempty"`
	PathPrefix  string   `json:"path_prefix,omitempty"`
	Host        string   `json:"host,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	Upstream    string   `json:"upstream"`
	StripPrefix string   `json:"strip_prefix,omitempty"`
	AddPrefix   string   `json:"add_prefix,omitempty"`
	Timeout     string   `json:"timeout"`
	// Split shows a route's weighted upstreams; archway_split_requests_total counts what each got.
	Split *splitView `json:"split,omitempty"`
}

type splitView struct {
	Sticky    string              `json:"sticky,omitempty"`
	Upstreams []splitUpstreamView `json:"upstreams"`
}

type splitUpstreamView struct {
	Upstream string `json:"upstream"`
	Weight   int    `json:"weight"`
	// Match is "header <Name>: <value>" or "cookie <name>=<value>" when set.
	Match string `json:"match,omitempty"`
}

func newSplitView(s *config.Split) *splitView {
	if s == nil {
		return nil
	}
	v := &splitView{Sticky: s.Sticky}
	for _, e := range s.Upstreams {
		u := splitUpstreamView{Upstream: e.Upstream, Weight: e.Weight}
		if m := e.Match; m != nil {
			if m.Header != "" {
				u.Match = "header " + m.Header + ": " + m.Value
			} else {
				u.Match = "cookie " + m.Cookie + "=" + m.Value
			}
		}
		v.Upstreams = append(v.Upstreams, u)
	}
	return v
}

func (a *api) routes(w http.ResponseWriter, _ *http.Request) {
	cfg := a.g.Snapshot().Config
	out := make([]routeView, 0, len(cfg.Routes))
	for _, rc := range cfg.Routes {
		out = append(out, routeView{
			Name: rc.Name, Path: rc.Match.Path, PathPrefix: rc.Match.PathPrefix, Host: rc.Match.Host,
			Methods: rc.Match.Methods, Upstream: rc.Upstream, StripPrefix: rc.StripPrefix, AddPrefix: rc.AddPrefix,
			Timeout: rc.Timeout.D().String(), Split: newSplitView(rc.Split),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

type targetView struct {
	Addr           string     `json:"addr"`
	Weight         int        `json:"weight"`
	Health         string     `json:"health"`
	InFlight       int64      `json:"in_flight"`
	Requests       uint64     `json:"requests"`
	Failures       uint64     `json:"failures"`
	RecentFailures int32      `json:"recent_failures"`
	Ejections      uint64     `json:"ejections"`
	EjectedUntil   *time.Time `json:"ejected_until,omitempty"`
	OpenConns      int64      `json:"open_connections"`
	Dials          uint64     `json:"dials"`
	Tunnels        int64      `json:"websocket_tunnels"`
	ChecksPassed   uint64     `json:"health_checks_passed"`
	ChecksFailed   uint64     `json:"health_checks_failed"`
}

type upstreamView struct {
	Name      string         `json:"name"`
	Balance   string         `json:"balance"`
	Discovery *discoveryView `json:"discovery,omitempty"`
	Targets   []targetView   `json:"targets"`
}

// discoveryView is how Consul feeds an upstream: "ok", "kept_last" (Consul says zero instances;
// the last set is kept until keep_until), "empty", "pending" (no answer yet); stale when Consul
// is unreachable and the last known endpoints are served.
type discoveryView struct {
	Source      string     `json:"source"`
	Service     string     `json:"service"`
	Status      string     `json:"status"`
	Stale       bool       `json:"stale"`
	Errors      uint64     `json:"errors"` // failed answers from the source since the watch started
	Error       string     `json:"error,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	UpdatedAt   *time.Time `json:"updated_at,omitempty"`
	KeepUntil   *time.Time `json:"keep_until,omitempty"`
	Index       uint64     `json:"index"`
}

func newDiscoveryView(st discovery.State) *discoveryView {
	v := &discoveryView{Source: "consul", Service: st.Service, Status: st.Status.String(), Stale: st.Stale(), Errors: st.Errors, Index: st.Index}
	if st.SourceErr != nil {
		v.Error = st.SourceErr.Error()
	}
	if st.LastError != nil {
		v.LastError = st.LastError.Error()
		at := st.LastErrorAt
		v.LastErrorAt = &at
	}
	if !st.UpdatedAt.IsZero() {
		at := st.UpdatedAt
		v.UpdatedAt = &at
	}
	if !st.KeepUntil.IsZero() {
		at := st.KeepUntil
		v.KeepUntil = &at
	}
	return v
}

func (a *api) upstreams(w http.ResponseWriter, _ *http.Request) {
	s := a.g.Snapshot()
	now := time.Now()
	names := make([]string, 0, len(s.Upstreams))
	for n := range s.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]upstreamView, 0, len(names))
	for _, n := range names {
		u := s.Upstreams[n]
		v := upstreamView{Name: n, Balance: u.Policy}
		if st, ok := a.g.DiscoveryState(n); ok {
			v.Discovery = newDiscoveryView(st)
		}
		for _, t := range u.Targets() {
			v.Targets = append(v.Targets, newTargetView(t, now))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func newTargetView(t *upstream.Target, now time.Time) targetView {
	st := t.Stats()
	v := targetView{
		Addr: t.Addr, Weight: t.Weight(), Health: t.Health(now.UnixNano()).String(), InFlight: st.InFlight,
		Requests: st.Requests, Failures: st.Failures, RecentFailures: st.RecentFailures, Ejections: st.Ejections,
		OpenConns: st.OpenConns, Dials: st.Dials, Tunnels: st.Tunnels, ChecksPassed: st.ChecksPassed, ChecksFailed: st.ChecksFailed,
	}
	if st.EjectedUntil.After(now) {
		until := st.EjectedUntil
		v.EjectedUntil = &until
	}
	return v
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
