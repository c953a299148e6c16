package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// Registration describes this process as an instance of a service: what other services find
// through Consul, and how Consul checks that it is healthy.
type Registration struct {
	Service string
	// ID is unique among all instances of all services on the agent; empty means
	// "<service>-<address>-<port>", unique as long as one address and port is one process.
	ID      string
	Address string // where others reach this instance (not 0.0.0.0); required
	Port    int    // required, 1..65535
	Tags    []string
	Meta    map[string]string // e.g. "weight": "2", "version": "1.4.0"
	Check   HTTPCheck
}

// HTTPCheck is the health check Consul runs against the instance: GET http://address:port+Path,
// passing on 2xx. Zero fields take the defaults.
type HTTPCheck struct {
	Path     string        // default "/health"
	Interval time.Duration // default 10s
	Timeout  time.Duration // default 5s, at most Interval
	// DeregisterCriticalAfter removes an instance whose check has been critical this long, so a
	// crashed process that never deregistered does not linger. Default 1m, which is also
	// Consul's minimum: its reaper runs on a coarse period and never acts sooner.
	DeregisterCriticalAfter time.Duration
}

// Registration defaults.
const (
	DefaultCheckPath               = "/health"
	DefaultCheckInterval           = 10 * time.Second
	DefaultCheckTimeout            = 5 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute
	DefaultResyncInterval          = 30 * time.Second
)

// RegistrarOptions tunes a Registrar. Zero values take the defaults.
type RegistrarOptions struct {
	// ResyncInterval is how often the Registrar checks that the agent still has the
	// registration and registers again if not (an agent restarted without its state loses it).
	// Default 30s.
	ResyncInterval time.Duration
	Backoff        Backoff      // retries while Consul is unreachable
	Logger         *slog.Logger // nil: no logs
}

// Registrar keeps one Registration in a Consul agent while Run runs and removes it when Run's
// context ends. Consul being down at start, or restarting and forgetting the service, is retried
// in the background: Run never fails for it.
//
// A Registrar is immutable apart from its status; Registered and ID are safe from any goroutine.
// Run it once, in a goroutine the caller owns.
type Registrar struct {
	client     *api.Client
	reg        *api.AgentServiceRegistration
	id         string
	resync     time.Duration
	backoff    Backoff
	log        *slog.Logger
	registered atomic.Bool
}

// NewRegistrar validates reg and fills its defaults. It does not contact Consul.
func NewRegistrar(client *api.Client, reg Registration, opts RegistrarOptions) (*Registrar, error) {
	if client == nil {
		return nil, errors.New("discovery: registrar needs a client")
	}
	if err := validService(reg.Service); err != nil {
		return nil, err
	}
	if reg.Address == "" {
		return nil, fmt.Errorf("discovery: register %s: address is empty", reg.Service)
	}
	if ip := net.ParseIP(reg.Address); ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("discovery: register %s: address %s is not reachable by others; give the instance's own address", reg.Service, reg.Address)
	}
	if reg.Port < 1 || reg.Port > 65535 {
		return nil, fmt.Errorf("discovery: register %s: port %d out of range 1..65535", reg.Service, reg.Port)
	}
	if reg.ID == "" {
		reg.ID = reg.Service + "-" + reg.Address + "-" + strconv.Itoa(reg.Port)
	}
	c := reg.Check
	if c.Path == "" {
		c.Path = DefaultCheckPath
	}
	if c.Path[0] != '/' {
		return nil, fmt.Errorf("discovery: register %s: check path %q must start with /", reg.Service, c.Path)
	}
	if c.Interval <= 0 {
		c.Interval = DefaultCheckInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultCheckTimeout
	}
	c.Timeout = min(c.Timeout, c.Interval)
	if c.DeregisterCriticalAfter <= 0 {
		c.DeregisterCriticalAfter = DefaultDeregisterCriticalAfter
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	checkURL := "http://" + net.JoinHostPort(reg.Address, strconv.Itoa(reg.Port)) + c.Path
	return &Registrar{
		client: client,
		reg: &api.AgentServiceRegistration{
			ID:      reg.ID,
			Name:    reg.Service,
			Address: reg.Address,
			Port:    reg.Port,
			Tags:    slices.Clone(reg.Tags),
			Meta:    maps.Clone(reg.Meta),
			Check: &api.AgentServiceCheck{
				CheckID:                        "service:" + reg.ID,
				Name:                           reg.Service + " HTTP " + c.Path,
				HTTP:                           checkURL,
				Method:                         http.MethodGet,
				Interval:                       c.Interval.String(),
				Timeout:                        c.Timeout.String(),
				DeregisterCriticalServiceAfter: c.DeregisterCriticalAfter.String(),
			},
		},
		id:      reg.ID,
		resync:  opts.ResyncInterval,
		backoff: opts.Backoff.withDefaults(),
		log:     log.With("service", reg.Service, "id", reg.ID),
	}, nil
}

// ID returns the service ID the instance is registered under.
func (r *Registrar) ID() string { return r.id }

// Registered reports whether the last contact with the agent found the registration in place.
func (r *Registrar) Registered() bool { return r.registered.Load() }

// Run registers the instance, retrying with backoff until the agent accepts it, then every
// ResyncInterval checks that the agent still has it and registers again if not. When ctx ends it
// deregisters (with a 5 s limit of its own) and returns: nil if the deregistration succeeded,
// else its error. A failed deregistration is not fatal: Consul removes the instance itself once
// its check has been critical for DeregisterCriticalAfter.
func (r *Registrar) Run(ctx context.Context) error {
	failures := 0
	for {
		var wait time.Duration
		if err := r.ensure(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			if failures == 1 {
				r.log.Warn("consul registration failed; retrying", "err", err)
			} else {
				r.log.Debug("consul registration failed again", "err", err, "attempt", failures)
			}
			wait = r.backoff.Delay(failures)
		} else {
			if failures > 0 {
				r.log.Info("consul registration recovered", "after_failures", failures)
			}
			failures = 0
			wait = r.resync
		}
		if sleep(ctx, wait) != nil {
			break
		}
	}
	return r.deregister(context.WithoutCancel(ctx))
}

// ensure registers the instance unless the agent already has it.
func (r *Registrar) ensure(ctx context.Context) error {
	if r.registered.Load() {
		svc, _, err := r.client.Agent().Service(r.id, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil && svc != nil {
			return nil
		}
		var se api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusNotFound {
			r.registered.Store(false) // unknown: the agent is unreachable or failing
			return fmt.Errorf("discovery: consul agent service %s: %w", r.id, err)
		}
		r.log.Warn("registration lost (Consul restarted?); registering again")
		r.registered.Store(false)
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.reg, opts); err != nil {
		return fmt.Errorf("discovery: consul register %s: %w", r.id, err)
	}
	r.registered.Store(true)
	r.log.Info("registered in consul")
	return nil
}

func (r *Registrar) deregister(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r.registered.Store(false)
	err := r.client.Agent().ServiceDeregisterOpts(r.id, (&api.QueryOptions{}).WithContext(ctx))
	if se := (api.StatusError{}); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil // never registered, or already gone
	}
	if err != nil {
		r.log.Warn("consul deregistration failed; Consul will reap the instance once its check is critical", "err", err)
		return fmt.Errorf("discovery: consul deregister %s: %w", r.id, err)
	}
	r.log.Info("deregistered from consul")
	return nil
}
