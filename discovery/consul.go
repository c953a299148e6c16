package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hashicorp/consul/api"
)

// ClientConfig says how to reach Consul. It mirrors the gateway's `consul:` config block.
type ClientConfig struct {
	Address    string // host:port or URL of the agent's HTTP API; empty: CONSUL_HTTP_ADDR or 127.0.0.1:8500
	Token      string // ACL token; empty: CONSUL_HTTP_TOKEN or none
	Datacenter string // default datacenter for queries; empty: the agent's
}

// NewClient returns a Consul API client for cfg, starting from the api package's defaults (which
// read the CONSUL_HTTP_* environment variables). The client is safe for concurrent use and is
// meant to be shared by every source and registrar of a process.
func NewClient(cfg ClientConfig) (*api.Client, error) {
	c := api.DefaultConfig()
	if cfg.Address != "" {
		c.Address = cfg.Address
	}
	if cfg.Token != "" {
		c.Token = cfg.Token
	}
	if cfg.Datacenter != "" {
		c.Datacenter = cfg.Datacenter
	}
	client, err := api.NewClient(c)
	if err != nil {
		return nil, fmt.Errorf("discovery: consul client for %s: %w", c.Address, err)
	}
	return client, nil
}

// ConsulOptions selects the service a Consul source watches and tunes the watch.
// Zero durations take the defaults.
type ConsulOptions struct {
	Service    string
	Tags       []string // instances must carry every one of these tags
	Datacenter string   // empty: the client's datacenter

	// Wait bounds one blocking query (Consul's `wait`); default 60s, at most 10m. A request that
	// has not answered by Wait plus Consul's jitter plus 5s is abandoned as failed, so a hung
	// agent is noticed.
	Wait time.Duration
	// MinInterval is the least time between the starts of two queries: under churn, changes are
	// batched into one snapshot per interval instead of a query storm. Default 200ms.
	MinInterval time.Duration
	Backoff     Backoff      // retries after failures
	Logger      *slog.Logger // nil: no logs
}

// Consul defaults.
const (
	DefaultConsulWait        = 60 * time.Second
	DefaultConsulMinInterval = 200 * time.Millisecond
	maxConsulWait            = 10 * time.Minute
)

// Consul is a Source backed by Consul's health endpoint (/v1/health/service/:service with
// passing=1): only instances whose every check (service and node) passes are in a snapshot. It
// follows the set with blocking queries, each waiting for a newer index than the last answer.
//
// Consul is immutable after NewConsul and safe for concurrent use; each Watch call runs its own
// query loop.
type Consul struct {
	client *api.Client
	opts   ConsulOptions
	log    *slog.Logger
}

var _ Source = (*Consul)(nil)

// NewConsul returns a source watching opts.Service through client. It does not contact Consul:
// an unreachable Consul is a transient condition reported by Watch, not an error here.
func NewConsul(client *api.Client, opts ConsulOptions) (*Consul, error) {
	if client == nil {
		return nil, errors.New("discovery: consul source needs a client")
	}
	if err := validService(opts.Service); err != nil {
		return nil, err
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultConsulWait
	}
	opts.Wait = min(opts.Wait, maxConsulWait)
	if opts.MinInterval <= 0 {
		opts.MinInterval = DefaultConsulMinInterval
	}
	opts.Tags = slices.Clone(opts.Tags)
	opts.Backoff = opts.Backoff.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", opts.Service, "source", "consul")
	return &Consul{client: client, opts: opts, log: log}, nil
}

// Watch follows the service until ctx ends; see Source for the contract.
//
// After a failure the next query is a fresh, non-blocking read (index 0): the agent may have been
// restarted and lost its state, and a blocking query with the old, higher index would then sit
// until Wait expires. The same reset happens when an answer's index goes backwards or is 0.
func (c *Consul) Watch(ctx context.Context, out chan<- Snapshot) error {
	var (
		index     uint64     // X-Consul-Index to block on; 0 = non-blocking read
		lastIndex uint64     // index of the last authoritative answer, to notice a restart
		last      []Endpoint // last authoritative set, nil until the first one
		haveLast  bool
		failing   bool // the last snapshot sent had Err set
		failures  int  // consecutive failures, for the backoff
		started   time.Time
	)
	for {
		if !started.IsZero() {
			if err := sleep(ctx, c.opts.MinInterval-time.Since(started)); err != nil {
				return err
			}
		}
		started = time.Now()
		eps, gotIndex, err := c.fetch(ctx, index)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failures++
			index = 0
			if !failing {
				c.log.Warn("consul query failed; keeping the last endpoints", "err", err, "endpoints", len(last))
			} else {
				c.log.Debug("consul query failed again", "err", err, "attempt", failures)
			}
			failing = true
			snap := Snapshot{Service: c.opts.Service, Endpoints: cloneEndpoints(last), Err: err, Index: lastIndex, Time: time.Now()}
			if err := send(ctx, out, snap); err != nil {
				return err
			}
			if err := sleep(ctx, c.opts.Backoff.Delay(failures)); err != nil {
				return err
			}
			continue
		}

		if failing {
			c.log.Info("consul query recovered", "after_failures", failures, "endpoints", len(eps))
		}
		failures = 0
		if haveLast && gotIndex < lastIndex {
			c.log.Info("consul index went backwards; Consul restarted or lost its state", "was", lastIndex, "now", gotIndex)
		}
		index = nextIndex(index, gotIndex)
		lastIndex = gotIndex
		if haveLast && !failing && sameEndpoints(eps, last) {
			continue // woke up on an unrelated change, or the wait expired
		}
		failing, haveLast, last = false, true, eps
		snap := Snapshot{Service: c.opts.Service, Endpoints: cloneEndpoints(eps), Index: gotIndex, Time: time.Now()}
		if err := send(ctx, out, snap); err != nil {
			return err
		}
	}
}

// nextIndex is the index for the next query after an answer with index got to a query with
// index prev. Consul's rules for blocking queries: an index that goes backwards means the state
// was reset, so read afresh (0); an index of 0 must never be blocked on (it returns at once, a
// busy loop), so use 1.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	default:
		return got
	}
}

// fetch runs one (blocking, when index > 0) health query and converts the answer.
func (c *Consul) fetch(ctx context.Context, index uint64) ([]Endpoint, uint64, error) {
	// Consul adds up to wait/16 of jitter; past that plus a margin the agent is hung.
	timeout := c.opts.Wait + c.opts.Wait/16 + 5*time.Second
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := &api.QueryOptions{Datacenter: c.opts.Datacenter, WaitIndex: index, WaitTime: c.opts.Wait}
	entries, meta, err := c.client.Health().ServiceMultipleTags(c.opts.Service, c.opts.Tags, true, q.WithContext(qctx))
	if err != nil {
		return nil, 0, fmt.Errorf("discovery: consul health query for %s: %w", c.opts.Service, err)
	}
	return endpointsFromHealth(entries), meta.LastIndex, nil
}

func endpointsFromHealth(entries []*api.ServiceEntry) []Endpoint {
	eps := make([]Endpoint, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		s := e.Service
		addr := s.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address // Consul's rule: a service without address uses its node's
		}
		eps = append(eps, Endpoint{
			ID:      s.ID,
			Address: addr,
			Port:    s.Port,
			Tags:    slices.Clone(s.Tags),
			Meta:    cloneMeta(s.Meta),
			Weight:  weightFromMeta(s.Meta, s.Weights.Passing),
		})
	}
	sortEndpoints(eps)
	return eps
}

func cloneMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
