package server

import (
	"context"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/proxy"
	"github.com/archway-gateway/archway/gateway/tracing"
)

// buildTracing gives the snapshot its tracer: the live one when server.tracing (and the trusted
// proxies it falls back on) did not change, a new one otherwise, none while tracing is off. It
// also fills the routes' own sample ratios.
func (b *builder) buildTracing(cfg *config.Config, s *proxy.Snapshot) error {
	tc := cfg.Server.Tracing
	if !tc.On() {
		return nil
	}
	if b.tracer.Matches(tc, s.TrustedProxies) {
		s.Tracer = b.tracer
	} else {
		t, err := tracing.New(tc, s.TrustedProxies, b.traceStats)
		if err != nil {
			return err
		}
		s.Tracer = t
	}
	for i, rc := range cfg.Routes {
		if rc.Tracing != nil {
			th := tracing.Threshold(rc.Tracing.SampleRatio)
			s.Routes[i].TraceSampling = &th
		}
	}
	return nil
}

// releaseTracer shuts down old's tracer when snap does not use it, once the requests that may
// still end spans on it are done; what it queued is exported first.
func releaseTracer(snap, old *proxy.Snapshot) {
	t := old.Tracer
	if t == nil || (snap != nil && snap.Tracer == t) {
		return
	}
	grace := old.Config.Server.WriteTimeout.D() + old.Config.Server.ReadTimeout.D()
	time.AfterFunc(grace, func() { shutdownTracer(t) })
}

// discardTracer shuts down the tracer a check built and nothing will use.
func discardTracer(snap, live *proxy.Snapshot) {
	if snap != nil && snap.Tracer != nil && snap.Tracer != live.Tracer {
		shutdownTracer(snap.Tracer)
	}
}

func shutdownTracer(t *tracing.Tracer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.Shutdown(ctx)
}
