package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/archway-gateway/archway/discovery"
	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/hashicorp/consul/api"
)

// firstSnapshotWait bounds how long building a snapshot waits for a new watch's first answer,
// so a gateway starting next to a healthy Consul starts with its targets rather than with 503s.
const firstSnapshotWait = 3 * time.Second

// watchKey identifies a watch: the same agent, service, filter and failure policy.
type watchKey struct {
	address, token, datacenter string
	service, tags              string
	onEmpty                    string
	keepLastFor                time.Duration
}

// watch follows one service in Consul. It outlives snapshots: a reload that keeps the upstream
// keeps the watch, and the new snapshot's Upstream takes over as its subscriber at commit.
type watch struct {
	key      watchKey
	upstream string
	tracker  *discovery.Tracker
	cancel   context.CancelFunc
	done     chan struct{}
	first    chan struct{} // closed at the first change (or when the watch ends)

	mu         sync.Mutex
	subscriber *upstream.Upstream // the live snapshot's upstream, fed on every change
}

// discoveryManager owns the watches and the Consul clients. Its lock is taken by builds,
// commits and watch callbacks, never by requests.
type discoveryManager struct {
	ctx      context.Context
	registry *upstream.Registry
	logger   *slog.Logger

	mu      sync.Mutex
	clients map[string]*api.Client
	watches map[watchKey]*watch
}

func newDiscoveryManager(ctx context.Context, registry *upstream.Registry, logger *slog.Logger) *discoveryManager {
	return &discoveryManager{ctx: ctx, registry: registry, logger: logger, clients: map[string]*api.Client{}, watches: map[watchKey]*watch{}}
}

func keyFor(cs *config.Consul, name string, uc *config.UpstreamConsul) watchKey {
	dc := uc.Datacenter
	if dc == "" {
		dc = cs.Datacenter
	}
	return watchKey{
		address: cs.Address, token: cs.Token.Reveal(), datacenter: dc,
		service: uc.Service, tags: strings.Join(uc.Tags, ","), onEmpty: uc.OnEmpty, keepLastFor: uc.KeepLastFor.D(),
	}
}

// endpoints returns what discovery knows now for an upstream, starting its watch if needed.
func (m *discoveryManager) endpoints(cfg *config.Config, name string, uc *config.UpstreamConsul) ([]upstream.TargetSpec, error) {
	w, err := m.watch(cfg.Consul, name, uc)
	if err != nil {
		return nil, err
	}
	select {
	case <-w.first:
	case <-time.After(firstSnapshotWait):
		m.logger.Warn("no answer from Consul yet; the upstream starts without targets", "upstream", name, "service", uc.Service)
	}
	return specs(w.tracker.State()), nil
}

func (m *discoveryManager) watch(cs *config.Consul, name string, uc *config.UpstreamConsul) (*watch, error) {
	key := keyFor(cs, name, uc)
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.watches[key]; ok {
		return w, nil
	}
	clientKey := key.address + "|" + key.token + "|" + cs.Datacenter
	client, ok := m.clients[clientKey]
	if !ok {
		var err error
		client, err = discovery.NewClient(discovery.ClientConfig{Address: cs.Address, Token: cs.Token.Reveal(), Datacenter: cs.Datacenter})
		if err != nil {
			return nil, fmt.Errorf("consul client: %w", err)
		}
		m.clients[clientKey] = client
	}
	src, err := discovery.NewConsul(client, discovery.ConsulOptions{
		Service: uc.Service, Tags: uc.Tags, Datacenter: key.datacenter,
		Logger: m.logger.With("component", "discovery", "upstream", name),
	})
	if err != nil {
		return nil, err
	}
	policy := discovery.Policy{OnEmpty: discovery.OnEmpty(uc.OnEmpty), KeepLastFor: uc.KeepLastFor.D()}
	tracker, err := discovery.NewTracker(uc.Service, policy, time.Now)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	w := &watch{key: key, upstream: name, tracker: tracker, cancel: cancel, done: make(chan struct{}), first: make(chan struct{})}
	var once sync.Once
	go func() {
		defer close(w.done)
		defer once.Do(func() { close(w.first) })
		_ = tracker.Follow(ctx, src, func(st discovery.State) {
			m.apply(w, st)
			once.Do(func() { close(w.first) })
		})
	}()
	m.watches[key] = w
	return w, nil
}

// apply feeds a change to the watch's live upstream.
func (m *discoveryManager) apply(w *watch, st discovery.State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subscriber == nil {
		return // not live yet: the commit reads the tracker's state itself
	}
	m.registry.Replace(w.subscriber, specs(st))
	m.logger.Info("upstream targets changed", "upstream", w.upstream, "service", st.Service,
		"targets", len(st.Endpoints), "status", st.Status.String())
}

func specs(st discovery.State) []upstream.TargetSpec {
	out := make([]upstream.TargetSpec, len(st.Endpoints))
	for i, e := range st.Endpoints {
		out[i] = upstream.TargetSpec{Addr: e.HostPort(), Weight: e.Weight}
	}
	return out
}

// commit makes the snapshot's discovered upstreams the subscribers of their watches, brings
// them up to date with anything that changed since they were built, and stops watches no
// upstream uses any more.
func (m *discoveryManager) commit(cfg *config.Config, ups map[string]*upstream.Upstream) {
	used := map[watchKey]bool{}
	for name, uc := range cfg.Upstreams {
		if uc.Consul == nil {
			continue
		}
		key := keyFor(cfg.Consul, name, uc.Consul)
		used[key] = true
		m.mu.Lock()
		w := m.watches[key]
		m.mu.Unlock()
		if w == nil {
			continue
		}
		w.mu.Lock()
		w.subscriber = ups[name]
		m.registry.Replace(w.subscriber, specs(w.tracker.State()))
		w.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, w := range m.watches {
		if !used[key] {
			w.cancel()
			delete(m.watches, key)
		}
	}
}

// state returns the discovery state of a live upstream, if discovery feeds it.
func (m *discoveryManager) state(cfg *config.Config, name string) (discovery.State, bool) {
	u := cfg.Upstreams[name]
	if u == nil || u.Consul == nil || cfg.Consul == nil {
		return discovery.State{}, false
	}
	m.mu.Lock()
	w := m.watches[keyFor(cfg.Consul, name, u.Consul)]
	m.mu.Unlock()
	if w == nil {
		return discovery.State{}, false
	}
	return w.tracker.State(), true
}

// close stops every watch and waits for them.
func (m *discoveryManager) close() {
	m.mu.Lock()
	watches := make([]*watch, 0, len(m.watches))
	for _, w := range m.watches {
		w.cancel()
		watches = append(watches, w)
	}
	m.watches = map[watchKey]*watch{}
	m.mu.Unlock()
	for _, w := range watches {
		<-w.done
	}
}
