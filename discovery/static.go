package discovery

import (
	"context"
	"fmt"
	"time"
)

// Static is a Source with a fixed endpoint list, for upstreams configured by address.
// It is immutable after NewStatic and safe for concurrent use.
type Static struct {
	service   string
	endpoints []Endpoint
}

var _ Source = (*Static)(nil)

// NewStatic returns a source that always has exactly endpoints. Each needs an address and a port
// in 1..65535; a missing ID becomes "address:port" and a missing weight comes from Meta["weight"]
// or 1. IDs must be unique. The list is copied.
func NewStatic(service string, endpoints []Endpoint) (*Static, error) {
	if err := validService(service); err != nil {
		return nil, err
	}
	eps := cloneEndpoints(endpoints)
	if eps == nil {
		eps = []Endpoint{}
	}
	seen := make(map[string]bool, len(eps))
	for i := range eps {
		e := &eps[i]
		if e.Address == "" {
			return nil, fmt.Errorf("discovery: static %s: endpoint %d has no address", service, i)
		}
		if e.Port < 1 || e.Port > 65535 {
			return nil, fmt.Errorf("discovery: static %s: endpoint %s: port %d out of range 1..65535", service, e.Address, e.Port)
		}
		if e.ID == "" {
			e.ID = e.HostPort()
		}
		if seen[e.ID] {
			return nil, fmt.Errorf("discovery: static %s: duplicate endpoint id %q", service, e.ID)
		}
		seen[e.ID] = true
		if e.Weight < 1 {
			e.Weight = weightFromMeta(e.Meta, 1)
		}
	}
	sortEndpoints(eps)
	return &Static{service: service, endpoints: eps}, nil
}

// Watch sends one authoritative Snapshot with the fixed set, then waits for ctx to end and returns
// ctx.Err().
func (s *Static) Watch(ctx context.Context, out chan<- Snapshot) error {
	snap := Snapshot{Service: s.service, Endpoints: cloneEndpoints(s.endpoints), Time: time.Now()}
	if err := send(ctx, out, snap); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}
