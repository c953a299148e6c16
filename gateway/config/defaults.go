package config

import (
	"fmt"
	"strings"
	"time"
)

// Defaults. docs/configuration.md lists the same values; a test keeps the two in step.
const (
	DefaultListen            = ":8080"
	DefaultReadTimeout       = Duration(30 * time.Second)
	DefaultWriteTimeout      = Duration(30 * time.Second)
	DefaultIdleTimeout       = Duration(90 * time.Second)
	DefaultMaxHeaderBytes    = Size(16 << 10)
	DefaultMaxBodyBytes      = Size(50 << 20)
	DefaultShutdownGrace     = Duration(15 * time.Second)
	DefaultEncodedSlashes    = KeepEncodedSlashes
	DefaultHealthPath        = "/health"
	DefaultAdminListen       = "127.0.0.1:9901"
	DefaultAccessLogOutput   = "stdout"
	DefaultBalance           = "least_conn"
	DefaultMaxFails          = 3
	DefaultFailTimeout       = Duration(30 * time.Second)
	DefaultConnectTimeout    = Duration(5 * time.Second)
	DefaultUpstreamTimeout   = Duration(30 * time.Second)
	DefaultMaxConnsPerTarget = 512
	DefaultQueueTimeout      = Duration(1 * time.Second)
	DefaultIdleConnTimeout   = Duration(30 * time.Second)
	DefaultMaxResponseBytes  = Size(1 << 30)
	DefaultWSIdleTimeout     = Duration(5 * time.Minute)
	DefaultWSMaxMessageBytes = Size(1 << 20)
	DefaultWSCloseGrace      = Duration(10 * time.Second)

	DefaultConsecutive5xx     = 5
	DefaultEjectionTime       = Duration(30 * time.Second)
	DefaultMaxEjectionPercent = 50
	DefaultHealthPathCheck    = "/health"
	DefaultCheckInterval      = Duration(5 * time.Second)
	DefaultCheckTimeout       = Duration(1 * time.Second)
	DefaultCheckHealthy       = 2
	DefaultCheckUnhealthy     = 3

	DefaultConsulAddress  = "127.0.0.1:8500"
	DefaultConsulService  = "archway"
	DefaultConsulOnEmpty  = "keep_last"
	DefaultConsulKeepLast = Duration(5 * time.Minute)
)

// EncodedSlashes is what a %2F in a path means: server.encoded_slashes.
type EncodedSlashes string

// What to do with encoded slashes.
const (
	KeepEncodedSlashes   EncodedSlashes = "keep"   // left encoded, inside its segment
	RejectEncodedSlashes EncodedSlashes = "reject" // 400
)

// DefaultSecurityHeaders are the headers the original nginx configuration added to every
// response.
func DefaultSecurityHeaders() map[string]string {
	return map[string]string{
		"X-Frame-Options":         "SAMEORIGIN",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "strict-origin-when-cross-origin",
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'self'",
	}
}

func (c *Config) applyDefaults() {
	s := &c.Server
	setDefault(&s.Listen, DefaultListen)
	setDefault(&s.ReadTimeout, DefaultReadTimeout)
	setDefault(&s.WriteTimeout, DefaultWriteTimeout)
	setDefault(&s.IdleTimeout, DefaultIdleTimeout)
	setDefault(&s.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&s.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&s.ShutdownGrace, DefaultShutdownGrace)
	setDefault(&s.EncodedSlashes, DefaultEncodedSlashes)
	setDefault(&s.HealthPath, DefaultHealthPath)
	s.applyConnectionDefaults()
	c.parkingDefault()
	if s.SecurityHeaders == nil {
		s.SecurityHeaders = DefaultSecurityHeaders()
	}

	if cs := c.Consul; cs != nil {
		setDefault(&cs.Address, DefaultConsulAddress)
		if r := cs.Register; r != nil {
			setDefault(&r.Service, DefaultConsulService)
			setDefault(&r.Address, "127.0.0.1")
		}
	}
	if !c.written("admin.listen") {
		c.Admin.Listen = DefaultAdminListen
	}
	setDefault(&c.AccessLog.Output, DefaultAccessLogOutput)
	c.AccessLog.setDefaults()
	if c.AccessLog.Enabled == nil {
		on := true
		c.AccessLog.Enabled = &on
	}

	for name, u := range c.Upstreams {
		if u == nil {
			u = &Upstream{}
			c.Upstreams[name] = u
		}
		setDefault(&u.Balance, DefaultBalance)
		if !c.written("upstreams." + name + ".max_fails") {
			u.MaxFails = DefaultMaxFails
		}
		setDefault(&u.FailTimeout, DefaultFailTimeout)
		setDefault(&u.ConnectTimeout, DefaultConnectTimeout)
		setDefault(&u.Timeout, DefaultUpstreamTimeout)
		setDefault(&u.MaxConnsPerTarget, DefaultMaxConnsPerTarget)
		setDefault(&u.QueueTimeout, DefaultQueueTimeout)
		setDefault(&u.IdleConnTimeout, DefaultIdleConnTimeout)
		setDefault(&u.MaxResponseBytes, DefaultMaxResponseBytes)
		u.applyBufferingDefaults(c, name)
		u.applyTLSDefaults(name)
		u.applyProtocolDefaults()
		for i := range u.Targets {
			setDefault(&u.Targets[i].Weight, 1)
		}
		if !c.written("upstreams." + name + ".outlier.consecutive_5xx") {
			u.Outlier.Consecutive5xx = DefaultConsecutive5xx
		}
		setDefault(&u.Outlier.EjectionTime, DefaultEjectionTime)
		setDefault(&u.Outlier.MaxEjectionPercent, DefaultMaxEjectionPercent)
		if uc := u.Consul; uc != nil {
			setDefault(&uc.OnEmpty, DefaultConsulOnEmpty)
			setDefault(&uc.KeepLastFor, DefaultConsulKeepLast)
		}
		if hc := u.HealthCheck; hc != nil {
			setDefault(&hc.Path, DefaultHealthPathCheck)
			setDefault(&hc.Interval, DefaultCheckInterval)
			setDefault(&hc.Timeout, DefaultCheckTimeout)
			setDefault(&hc.Healthy, DefaultCheckHealthy)
			setDefault(&hc.Unhealthy, DefaultCheckUnhealthy)
		}
	}

	for i, r := range c.Routes {
		if r == nil {
			r = &Route{}
			c.Routes[i] = r
		}
		for j, m := range r.Match.Methods {
			r.Match.Methods[j] = strings.ToUpper(m)
		}
		r.Match.Host = strings.ToLower(r.Match.Host)
		if r.Timeout == 0 {
			if u := c.Upstreams[r.Upstream]; u != nil {
				r.Timeout = u.Timeout
			}
		}
		if ws := r.WebSocket; ws != nil {
			if !ws.Enabled {
				r.WebSocket = nil
			} else {
				setDefault(&ws.IdleTimeout, DefaultWSIdleTimeout)
				setDefault(&ws.MaxMessageBytes, DefaultWSMaxMessageBytes)
				setDefault(&ws.CloseGrace, DefaultWSCloseGrace)
			}
		}
		c.routePolicyDefaults(fmt.Sprintf("routes[%d]", i), r)
	}

	c.redisDefaults()
	c.jwtDefaults()
	c.applyRedirectDefaults()
	c.applyListenerDefaults()
	c.applyHTTP2Defaults()
	c.applyTracingDefaults()
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}
