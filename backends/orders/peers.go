package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/archway-gateway/archway/backends/internal/telemetry"
	"github.com/archway-gateway/archway/discovery"
)

// Peer tells where another service is for one call. StaticPeer is a fixed address from flags or
// the environment; a discovery resolver (Consul) can stand in for it later without changing the
// clients.
type Peer interface {
	// BaseURL returns the service's base URL without a trailing slash, e.g. http://10.0.0.7:3002.
	BaseURL() (string, error)
}

// StaticPeer is a fixed base URL.
type StaticPeer string

var _ Peer = StaticPeer("")

// BaseURL returns the URL itself.
func (p StaticPeer) BaseURL() (string, error) { return string(p), nil }

// resolverPeer finds a peer's instances in Consul and picks one per call, round-robin.
type resolverPeer struct{ r *discovery.Resolver }

var _ Peer = resolverPeer{}

// BaseURL returns http://host:port of the next instance.
func (p resolverPeer) BaseURL() (string, error) {
	ep, err := p.r.Pick()
	if err != nil {
		return "", err
	}
	return "http://" + ep.HostPort(), nil
}

// ConsulPeer follows the passing instances of service in the Consul agent at addr until ctx
// ends. It waits a little for the first answer, so a service starting next to a healthy Consul
// can call its peers at once; calls made before any answer fail with discovery.ErrNoEndpoints.
func ConsulPeer(ctx context.Context, addr, service string, log *slog.Logger) (Peer, error) {
	client, err := discovery.NewClient(discovery.ClientConfig{Address: addr})
	if err != nil {
		return nil, fmt.Errorf("%s peer: %w", service, err)
	}
	src, err := discovery.NewConsul(client, discovery.ConsulOptions{Service: service, Logger: log.With("peer", service)})
	if err != nil {
		return nil, fmt.Errorf("%s peer: %w", service, err)
	}
	r, err := discovery.NewResolver(service, src, discovery.Policy{})
	if err != nil {
		return nil, fmt.Errorf("%s peer: %w", service, err)
	}
	go func() { _ = r.Run(ctx) }()
	select {
	case <-r.Ready():
	case <-time.After(5 * time.Second):
		log.WarnContext(ctx, "no instances of a peer in Consul yet", "peer", service)
	case <-ctx.Done():
	}
	return resolverPeer{r}, nil
}

// ParsePeer checks a base URL from configuration and returns it as a StaticPeer.
func ParsePeer(name, raw string) (StaticPeer, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s URL %q: must be http://host:port or https://host:port", name, raw)
	}
	return StaticPeer(strings.TrimSuffix(raw, "/")), nil
}

// ClientOptions tune a peerClient. Zero fields take the defaults below.
type ClientOptions struct {
	Timeout time.Duration // per attempt (default 5 s)
	Retries int           // extra attempts for idempotent calls (0: none)
	Backoff time.Duration // before the first retry, doubling (default 100 ms)
}

// peerClient calls one peer service over HTTP. Every attempt has its own timeout; only calls
// marked idempotent are retried, and only after a transport error or a 502, 503 or 504, so a
// retry can never do something twice. Safe for concurrent use.
type peerClient struct {
	service string
	peer    Peer
	http    *http.Client
	opts    ClientOptions
}

func newPeerClient(service string, peer Peer, opts ClientOptions) *peerClient {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	opts.Retries = max(opts.Retries, 0)
	if opts.Backoff == 0 {
		opts.Backoff = 100 * time.Millisecond
	}
	transport := &http.Transport{
		Proxy:                 nil, // peers are called directly, never through an environment proxy
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
		TLSHandshakeTimeout:   opts.Timeout,
	}
	// Every call is a client span of the request's trace and carries its traceparent.
	return &peerClient{service: service, peer: peer, opts: opts, http: &http.Client{Transport: telemetry.Transport(transport)}}
}

// worstCase is the longest a call can take with every attempt timing out.
func (c *peerClient) worstCase() time.Duration {
	d, backoff := c.opts.Timeout, c.opts.Backoff
	for range c.opts.Retries {
		d += backoff + c.opts.Timeout
		backoff *= 2
	}
	return d
}

// peerCall is one request to a peer.
type peerCall struct {
	method, path string
	body         any    // JSON-encoded when not nil
	raw          []byte // sent as is (JSON) when body is nil
	token        string // forwarded as Authorization: Bearer
	requestID    string
	header       map[string]string
	// idempotent marks a call that may be repeated without effect: only these are retried.
	idempotent bool
}

// peerReply is a peer's answer.
type peerReply struct {
	status int
	body   []byte
}

// errorMessage is the "error" of a peer's JSON error body, or the status text.
func (r peerReply) errorMessage() string {
	var e struct{ Error, Field string }
	if json.Unmarshal(r.body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return http.StatusText(r.status)
}

// errUnavailable wraps every failure to get an answer from a peer.
var errUnavailable = errors.New("peer unavailable")

func retryable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// do performs the call, retrying as the call allows, and returns the final answer. An error
// (wrapping errUnavailable) means no usable answer arrived: the outcome of a non-idempotent call
// is then unknown.
func (c *peerClient) do(ctx context.Context, call peerCall) (peerReply, error) {
	ctx = reqctx.Detach(ctx) // the HTTP client watches ctx from its own goroutines
	body := call.raw
	if call.body != nil {
		var err error
		if body, err = json.Marshal(call.body); err != nil {
			return peerReply{}, fmt.Errorf("encode %s request: %w", c.service, err)
		}
	}
	attempts := 1
	if call.idempotent {
		attempts += c.opts.Retries
	}
	backoff := c.opts.Backoff
	var last error
	for attempt := 1; ; attempt++ {
		reply, err := c.once(ctx, call, body)
		if err == nil && !retryable(reply.status) {
			return reply, nil
		}
		if err == nil {
			err = fmt.Errorf("%s answered %d: %s", c.service, reply.status, reply.errorMessage())
		}
		last = err
		if attempt >= attempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff *= 2
	}
	return peerReply{}, fmt.Errorf("%w: %s %s %s after %d attempt(s): %w", errUnavailable, c.service, call.method, call.path, attempts, last)
}

func (c *peerClient) once(ctx context.Context, call peerCall, body []byte) (peerReply, error) {
	base, err := c.peer.BaseURL()
	if err != nil {
		return peerReply{}, fmt.Errorf("resolve %s: %w", c.service, err)
	}
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, call.method, base+call.path, bytes.NewReader(body))
	if err != nil {
		return peerReply{}, fmt.Errorf("build %s request: %w", c.service, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if call.token != "" {
		req.Header.Set("Authorization", "Bearer "+call.token)
	}
	if call.requestID != "" {
		req.Header.Set(api.HeaderRequestID, call.requestID)
	}
	for k, v := range call.header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return peerReply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return peerReply{}, fmt.Errorf("read %s response: %w", c.service, err)
	}
	return peerReply{status: resp.StatusCode, body: raw}, nil
}
