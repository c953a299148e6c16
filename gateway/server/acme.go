package server

import (
	"bytes"
	"net/http"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/listener"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// prepareACME returns the ACME manager for TLS listener i of cfg: the running one when its
// settings are unchanged (a reload keeps its certificates and pending orders), or a new one,
// not started, that inherits the running one's counters.
func (g *Gateway) prepareACME(cfg *config.Config, i int) (*listener.ACME, error) {
	lst := cfg.EffectiveListeners()
	l := lst[i]
	opts := listener.ACMEOptions{Listener: l.Name, TLSAddr: l.Addr, Logger: g.logger}
	for _, other := range lst {
		if other.TLS == nil {
			opts.HTTPAddr = other.Addr // HTTP-01 is answered on every plain listener; the first names the port
			break
		}
	}
	var running *listener.ACME
	if i < len(g.listeners) && g.listeners[i].tls != nil {
		running = g.listeners[i].tls.Load().ACME
	}
	if running != nil && running.Same(l.TLS.ACME, opts) {
		return running, nil
	}
	var stats *listener.ACMEStats
	if running != nil {
		stats = running.Stats()
	}
	return listener.NewACME(l.TLS.ACME, opts, stats)
}

var acmeChallengePath = []byte("/.well-known/acme-challenge/")

// answerACMEChallenges answers ACME HTTP-01 challenges on a plain listener before anything
// else (redirect_https, routes): a CA validating a host asks for
// /.well-known/acme-challenge/<token> over plain HTTP. A request for a token no manager
// knows, and every other request, goes to next. Without tls.acme this is one prefix check.
func (g *Gateway) answerACMEChallenges(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if bytes.HasPrefix(ctx.Request.Header.RequestURI(), acmeChallengePath) && g.answerHTTP01(ctx) {
			return
		}
		next(ctx)
	}
}

// answerHTTP01 asks every ACME manager for the token; certmagic finds it in memory, or in the
// shared storage when another replica placed the order.
func (g *Gateway) answerHTTP01(ctx *fasthttp.RequestCtx) bool {
	for _, rt := range g.listeners {
		if rt.tls == nil {
			continue
		}
		m := rt.tls.Load().ACME
		if m == nil || m.HTTPChallenge() == nil {
			continue
		}
		issuer := m.HTTPChallenge()
		answered := false
		fasthttpadaptor.NewFastHTTPHandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			answered = issuer.HandleHTTPChallenge(w, r)
		})(ctx)
		if answered {
			return true
		}
		ctx.Response.Reset()
	}
	return false
}

var (
	acmeCertificatesDesc = prometheus.NewDesc("archway_acme_certificates_total",
		"Certificates this gateway obtained or renewed from the ACME CA, by listener and event (obtained, renewed).", []string{"listener", "event"}, nil)
	acmeErrorsDesc = prometheus.NewDesc("archway_acme_errors_total",
		"Failed ACME orders, by listener and operation (obtain, renew); certificates in use keep serving and the order is retried with back-off.", []string{"listener", "operation"}, nil)
)

func collectACME(ch chan<- prometheus.Metric, name string, s *listener.ACMEStats) {
	ch <- prometheus.MustNewConstMetric(acmeCertificatesDesc, prometheus.CounterValue, float64(s.Obtained.Load()), name, "obtained")
	ch <- prometheus.MustNewConstMetric(acmeCertificatesDesc, prometheus.CounterValue, float64(s.Renewed.Load()), name, "renewed")
	ch <- prometheus.MustNewConstMetric(acmeErrorsDesc, prometheus.CounterValue, float64(s.ObtainFailures.Load()), name, "obtain")
	ch <- prometheus.MustNewConstMetric(acmeErrorsDesc, prometheus.CounterValue, float64(s.RenewFailures.Load()), name, "renew")
}
