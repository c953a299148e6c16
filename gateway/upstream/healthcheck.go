package upstream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

// checkSettings are the active health check settings of one target.
type checkSettings struct {
	path      string
	grpc      bool   // probe with grpc.health.v1 Check (grpchealth.go) instead of GET path
	service   string // the service grpc checks ask about; "" is the server as a whole
	interval  time.Duration
	timeout   time.Duration
	healthy   int
	unhealthy int
}

// checkState is a running checker: its settings and how to stop it.
type checkState struct {
	settings checkSettings
	cancel   context.CancelFunc
}

// configureCheckLocked starts, restarts (settings changed) or stops the target's checker.
// Called under the registry lock.
func (r *Registry) configureCheckLocked(t *Target, hc *config.HealthCheck) {
	cur := t.check.Load()
	if hc == nil {
		if cur != nil {
			cur.cancel()
			t.check.Store(nil)
			t.activeDown.Store(false)
		}
		return
	}
	s := checkSettings{path: hc.Path, interval: hc.Interval.D(), timeout: hc.Timeout.D(), healthy: hc.Healthy, unhealthy: hc.Unhealthy}
	if hc.GRPCService != nil {
		s.grpc, s.service = true, *hc.GRPCService
	}
	if cur != nil && cur.settings == s {
		return
	}
	if cur != nil {
		cur.cancel()
	}
	ctx, cancel := context.WithCancel(r.ctx)
	t.check.Store(&checkState{settings: s, cancel: cancel})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if s.grpc {
			t.runGRPCChecks(ctx, s, r.logger)
			return
		}
		t.runChecks(ctx, s, r.logger)
	}()
}

// stopCheck stops the target's checker, if it has one.
func (t *Target) stopCheck() {
	if cur := t.check.Load(); cur != nil {
		cur.cancel()
	}
}

// runChecks probes the target with GET path until ctx ends (see probeLoop).
func (t *Target) runChecks(ctx context.Context, s checkSettings, logger *slog.Logger) {
	client := &fasthttp.HostClient{
		Addr:                      t.Addr,
		Name:                      "archway-health-check",
		MaxConns:                  1,
		ReadTimeout:               s.timeout,
		WriteTimeout:              s.timeout,
		MaxIdleConnDuration:       2 * s.interval,
		MaxIdemponentCallAttempts: 1,
		DisablePathNormalizing:    true,
		// The pool's connect: the same dialer and, for a TLS upstream, the same handshake as
		// requests, so a probe fails when requests would (an untrusted certificate included).
		Dial: func(string) (net.Conn, error) {
			conn, _, err := t.pool.connect(s.timeout)
			return conn, err
		},
	}
	defer client.CloseIdleConnections()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	t.probeLoop(ctx, s, logger, func() (bool, string) {
		req.Reset()
		req.SetRequestURI(s.path)
		req.Header.SetHost(t.Addr)
		err := client.DoTimeout(req, resp, s.timeout)
		if err != nil {
			return false, err.Error()
		}
		code := resp.StatusCode()
		return code >= 200 && code < 400, fasthttp.StatusMessage(code)
	})
}

// probeLoop runs probe every interval until ctx ends. A target starts healthy (it was configured
// as such; passive health catches a dead one on its first requests too) and changes state after
// `unhealthy` consecutive failures or `healthy` consecutive successes. probe reports the outcome
// and, for a failure, why.
func (t *Target) probeLoop(ctx context.Context, s checkSettings, logger *slog.Logger, probe func() (ok bool, reason string)) {
	// Spread the first probes of many targets over a tenth of the interval.
	wait := time.Duration(rand.Int64N(int64(s.interval)/10 + 1))
	successes, failures := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = s.interval
		ok, reason := probe()
		if ok {
			t.checksPassed.Add(1)
			successes, failures = successes+1, 0
			if t.activeDown.Load() && successes >= s.healthy {
				t.activeDown.Store(false)
				logger.Info("upstream target healthy again", "upstream", t.Upstream, "target", t.Addr)
			}
			continue
		}
		t.checksFailed.Add(1)
		failures, successes = failures+1, 0
		if !t.activeDown.Load() && failures >= s.unhealthy {
			t.activeDown.Store(true)
			logger.Warn("upstream target unhealthy", "upstream", t.Upstream, "target", t.Addr, "reason", reason)
		}
	}
}
