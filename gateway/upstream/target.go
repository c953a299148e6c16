package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/balancer"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
)

// bufferLimit is the largest response body read whole into memory; larger and chunked bodies
// stream to the client through a bodyStream.
const bufferLimit = 64 << 10

// Health is how a target is doing, as /upstreams shows it.
type Health uint8

const (
	Healthy   Health = iota
	Ejected          // passive health: max_fails failures within fail_timeout, or a 5xx burst
	Unhealthy        // active health checks failing
	Draining         // removed from the configuration; finishing what it has
)

func (h Health) String() string {
	return [...]string{"healthy", "ejected", "unhealthy", "draining"}[h]
}

// Target is one address of an upstream: its keep-alive pool and its live state, all atomics.
// The registry shares a Target between every snapshot that names the same upstream and address
// with equal Settings, so counters and warm connections survive a reload. Safe for concurrent use.
type Target struct {
	Upstream string
	Addr     string
	id       uint64
	pool     *pool
	h2       *h2Client // HTTP/2 upstreams only (h2.go); nil for http1
	weight   atomic.Int32

	inflight  atomic.Int64
	tunnels   atomic.Int64 // open upgraded connections (also counted in inflight)
	requests  atomic.Uint64
	failures  atomic.Uint64 // failures that counted toward max_fails
	ejections atomic.Uint64

	// Passive health, nginx's max_fails/fail_timeout: failures are counted in a window that
	// starts at the first failure and lasts fail_timeout; max_fails of them eject the target for
	// fail_timeout. After that it is on probation: one success clears it, one failure ejects it
	// again at once.
	windowStart  atomic.Int64
	failCount    atomic.Int32
	ejectedUntil atomic.Int64
	probation    atomic.Bool

	// Response buffering (buffer.go): bodies read whole ahead of the client, and those of them
	// that needed a temporary file.
	buffered atomic.Uint64
	spilled  atomic.Uint64

	// Outlier detection: consecutive 5xx answers.
	consecutive5xx atomic.Int32

	// Active health checking (see healthcheck.go).
	activeDown   atomic.Bool
	check        atomic.Pointer[checkState]
	checksPassed atomic.Uint64
	checksFailed atomic.Uint64
}

var _ balancer.Endpoint = (*Target)(nil)

func newTarget(upstreamName, addr string, weight int, s Settings) *Target {
	t := &Target{
		Upstream: upstreamName,
		Addr:     addr,
		id:       balancer.HashBytes([]byte(addr)),
		pool:     newPool(addr, s),
	}
	if s.Protocol.HTTP2() {
		t.h2 = newH2Client(t, s)
	}
	t.weight.Store(int32(max(weight, 1)))
	return t
}

// InFlight implements balancer.Endpoint.
func (t *Target) InFlight() int64 { return t.inflight.Load() }

// Weight implements balancer.Endpoint.
func (t *Target) Weight() int { return int(t.weight.Load()) }

// ID implements balancer.Endpoint.
func (t *Target) ID() uint64 { return t.id }

// Available implements balancer.Endpoint: not ejected. A draining target stays available to the
// old snapshot that still lists it; new snapshots no longer do.
func (t *Target) Available(now int64) bool {
	return now >= t.ejectedUntil.Load() && !t.activeDown.Load()
}

// Health reports the target's state at time now.
func (t *Target) Health(now int64) Health {
	switch {
	case t.pool.draining.Load():
		return Draining
	case t.activeDown.Load():
		return Unhealthy
	case now < t.ejectedUntil.Load():
		return Ejected
	}
	return Healthy
}

// Stats is a snapshot of a target's counters.
type Stats struct {
	InFlight  int64
	Requests  uint64
	Failures  uint64
	Ejections uint64
	OpenConns int64
	Dials     uint64
	// RecentFailures is the count in the current fail_timeout window.
	RecentFailures int32
	EjectedUntil   time.Time
	// ChecksPassed and ChecksFailed count active health check probes.
	ChecksPassed, ChecksFailed uint64
	Tunnels                    int64
	// PeerClosed counts idle connections found closed by the upstream at checkout.
	PeerClosed uint64
	// Buffered counts response bodies read whole ahead of the client (buffering), so the
	// connection went back to the pool before the client had them; Spilled counts those that
	// needed a temporary file.
	Buffered, Spilled uint64
}

// Stats reads the counters.
func (t *Target) Stats() Stats {
	s := Stats{
		InFlight: t.inflight.Load(), Requests: t.requests.Load(), Failures: t.failures.Load(),
		Ejections: t.ejections.Load(), OpenConns: t.pool.open.Load(), Dials: t.pool.dials.Load(),
		RecentFailures: t.failCount.Load(), ChecksPassed: t.checksPassed.Load(), ChecksFailed: t.checksFailed.Load(),
		Tunnels: t.tunnels.Load(), PeerClosed: t.pool.peerClosed.Load(),
		Buffered: t.buffered.Load(), Spilled: t.spilled.Load(),
	}
	if until := t.ejectedUntil.Load(); until > 0 {
		s.EjectedUntil = time.Unix(0, until)
	}
	return s
}

// Health policy of one upstream, passed in by the caller because it belongs to the config
// snapshot while the Target outlives snapshots.
type passivePolicy struct {
	maxFails    int32
	failTimeout int64 // nanoseconds
}

// recordFailure counts a failure at time now and ejects the target when max_fails is reached.
func (t *Target) recordFailure(now int64, p passivePolicy) {
	t.failures.Add(1)
	if p.maxFails <= 0 {
		return
	}
	if t.probation.Load() {
		t.eject(now, p)
		return
	}
	start := t.windowStart.Load()
	if now-start > p.failTimeout && t.windowStart.CompareAndSwap(start, now) {
		t.failCount.Store(0)
	}
	if t.failCount.Add(1) >= p.maxFails {
		t.eject(now, p)
	}
}

func (t *Target) eject(now int64, p passivePolicy) { t.ejectFor(now, p.failTimeout) }

// ejectFor takes the target out of rotation for d. It reports whether this call ejected it.
func (t *Target) ejectFor(now, d int64) bool {
	prev := t.ejectedUntil.Load()
	if prev > now {
		return false // already ejected
	}
	if t.ejectedUntil.CompareAndSwap(prev, now+d) {
		t.ejections.Add(1)
		t.failCount.Store(0)
		t.consecutive5xx.Store(0)
		t.probation.Store(true)
		return true
	}
	return false
}

// recordSuccess ends probation after an ejection.
func (t *Target) recordSuccess() {
	if t.probation.Load() {
		t.probation.Store(false)
		t.failCount.Store(0)
	}
}

// RoundTrip describes one round trip. It is owned by the caller and reused across requests.
type RoundTrip struct {
	Deadline time.Time // absolute response deadline (the route's timeout)
	Timeout  time.Duration
	Now      int64 // unix nanoseconds at the start
	Head     bool  // HEAD request: the response has no body whatever it declares
	// ClientBody, when the request body streams from the client, reports why reading it
	// failed; Do then blames the client (KindClient), not the target.
	ClientBody interface{ Err() error }
	// Informational, when set, receives each interim response (1xx but 100 and 101, such as
	// 103 Early Hints) before the final one is read, to pass it on to the client.
	Informational func(h *fasthttp.ResponseHeader)
	// Fresh makes Do dial a new connection instead of reusing an idle one: the repeat of a
	// request that met a stale keep-alive connection.
	Fresh bool
	// Released is when Do read a whole answer and returned its connection to the pool (zero
	// when the body still streams, or on an error): the pool stamps the connection's idle time
	// with it and the caller may take the exchange's duration from it, one clock read for both.
	Released  time.Time
	policy    passivePolicy
	buffering *Buffering // the upstream's response buffering; nil: off
}

// Do sends req to the target and reads the response into resp. A body up to 64 KiB is read
// whole and the connection returned to the pool before Do returns; a larger or chunked body is
// left as resp's body stream, which holds the connection until fasthttp has written it to the
// client and closed it, unless the upstream buffers responses (buffer.go): then Do reads such a
// body ahead of the client and returns the connection first. Do never retries: that is the
// caller's decision, made from the *Error.
//
// req must carry no hop-by-hop headers and must not ask for a protocol upgrade: the connection
// goes back to a shared pool.
func (t *Target) Do(req *fasthttp.Request, resp *fasthttp.Response, x *RoundTrip) error {
	x.Released = time.Time{}
	t.inflight.Add(1)
	t.requests.Add(1)
	pc, err := t.pool.acquire(x.Deadline, x.Now, x.Fresh)
	if err != nil {
		t.inflight.Add(-1)
		e := dialError(t.Addr, err)
		if e.Kind.countsAsFailure() {
			t.recordFailure(x.Now, x.policy)
		}
		return e
	}
	reused := pc.uses > 0
	if err := pc.setDeadline(x.Deadline, protocol.DeadlineSlack(x.Timeout)); err != nil {
		return t.fail(pc, x, KindWrite, err)
	}
	pc.out.passed = false
	if err := req.Write(pc.bw); err != nil {
		return t.failWrite(pc, x, reused, err)
	}
	// The upstream cannot have answered yet: a read now would fail with EAGAIN. send writes
	// the request and waits for the answer without that read (send.go).
	if err := pc.send(); err != nil {
		return t.failWrite(pc, x, reused, err)
	}

	var head []byte // the head's bytes as buffered before fasthttp parses them (lengthBesideChunked)
	for interim := 0; ; interim++ {
		if zeroStatus(pc.br) {
			return t.fail(pc, x, KindProtocol, errStatus)
		}
		head, _ = pc.br.Peek(pc.br.Buffered())
		if err := resp.Header.Read(pc.br); err != nil {
			switch {
			case isTimeout(err):
				return t.fail(pc, x, KindTimeout, err)
			case reused && isPeerClosed(err):
				e := t.fail(pc, x, KindStale, err).(*Error)
				e.Written = true
				return e
			case isPeerClosed(err):
				return t.fail(pc, x, KindRead, err)
			}
			return t.fail(pc, x, KindProtocol, err)
		}
		code := resp.Header.StatusCode()
		if code < 100 {
			return t.fail(pc, x, KindProtocol, errStatus)
		}
		// fasthttp tolerates a space inside a field name and marks such a head
		// Connection: close, so only a head so marked is looked at.
		if resp.Header.ConnectionClose() && spaceInName(&resp.Header) {
			return t.fail(pc, x, KindProtocol, errFieldName)
		}
		if code == fasthttp.StatusSwitchingProtocols {
			return t.fail(pc, x, KindProtocol, errUpgrade)
		}
		if code >= 200 || code < 100 {
			break
		}
		// 1xx interim responses: 100 Continue answers the gateway's own request; the others
		// (103 Early Hints) are the client's, when the caller passes them on.
		if interim == maxInterim {
			return t.fail(pc, x, KindProtocol, errInterim)
		}
		if code != fasthttp.StatusContinue && x.Informational != nil {
			x.Informational(&resp.Header)
		}
	}

	reusable := !resp.Header.ConnectionClose()
	code := resp.Header.StatusCode()
	if x.Head || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified {
		resp.SkipBody = true
		pc.bodiless = true
		t.finishAnswer(pc, reusable, x)
		t.recordSuccess()
		return nil
	}
	limit := t.pool.settings.MaxResponseBytes
	switch cl := resp.Header.ContentLength(); {
	case cl >= 0 && cl <= bufferLimit:
		if err := resp.ReadBody(pc.br, 0); err != nil {
			kind := KindRead
			if isTimeout(err) {
				kind = KindTimeout
			}
			return t.fail(pc, x, kind, err)
		}
		t.finishAnswer(pc, reusable, x)
	case cl > 0 && int64(cl) > limit:
		return t.fail(pc, x, KindTooLarge, errTooLarge)
	default:
		var s *bodyStream
		switch {
		case cl >= 0:
			s = newBodyStream(pc, t, framingFixed, int64(cl), limit, x.Timeout, reusable)
		case cl == -1:
			// fasthttp reads a head with both framings as chunked and drops the length, as
			// RFC 9112 (section 6.3) has a proxy do; but where the two disagree, the bytes
			// after the chunked body would be taken for the next exchange's answer.
			reusable = reusable && !lengthBesideChunked(head)
			if err := firstChunkBroken(pc.br); err != nil {
				return t.fail(pc, x, KindProtocol, err)
			}
			s = newBodyStream(pc, t, framingChunked, 0, limit, x.Timeout, reusable)
		default:
			s = newBodyStream(pc, t, framingClose, 0, limit, x.Timeout, false)
		}
		if x.buffering.wants(&resp.Header, cl) {
			return t.spool(s, resp, max(cl, -1), x)
		}
		resp.SetBodyStream(s, max(cl, -1))
	}
	t.recordSuccess()
	return nil
}

func (t *Target) failWrite(pc *pconn, x *RoundTrip, reused bool, err error) error {
	if x.ClientBody != nil {
		if cerr := x.ClientBody.Err(); cerr != nil {
			return t.fail(pc, x, KindClient, cerr)
		}
	}
	switch {
	case reused && isPeerClosed(err):
		return t.fail(pc, x, KindStale, err)
	case isTimeout(err):
		return t.fail(pc, x, KindTimeout, err)
	}
	return t.fail(pc, x, KindWrite, err)
}

// fail discards the connection and classifies the failure.
func (t *Target) fail(pc *pconn, x *RoundTrip, kind Kind, err error) error {
	if pc.uses == 0 && (kind == KindRead || kind == KindWrite) && t.pool.clientCertAsked.Load() {
		err = fmt.Errorf("%w (the target asked for a client certificate and none is configured: tls.cert_file and key_file)", err)
	}
	t.pool.discard(pc)
	t.inflight.Add(-1)
	if kind.countsAsFailure() {
		t.recordFailure(x.Now, x.policy)
	}
	return &Error{Kind: kind, Addr: t.Addr, Err: err}
}

// finishAnswer ends an exchange whose answer Do read whole. The connection's idle time starts
// now, not when the exchange started: an exchange that waited on a slow or busy upstream
// would otherwise come back looking idle for that long, and its next checkout would ask the
// kernel whether the upstream closed it (idleCheckAfter) although it was released a moment ago.
func (t *Target) finishAnswer(pc *pconn, reusable bool, x *RoundTrip) {
	x.Released = time.Now()
	t.finish(pc, reusable, x.Released.UnixNano())
}

// finish ends an exchange whose response was read completely (or abandoned); now stamps the
// connection's last use for idle expiry.
func (t *Target) finish(pc *pconn, reusable bool, now int64) {
	t.pool.release(pc, reusable, now)
	t.inflight.Add(-1)
}

// DialTunnel opens a connection for a protocol upgrade (WebSocket). It never comes from the
// keep-alive pool and never goes back to it: an upgraded connection speaks another protocol and
// belongs to its tunnel alone. The open tunnel counts as a request in flight, so least_conn sees
// it, until TunnelClosed. A failed dial counts toward max_fails like any connection failure.
func (t *Target) DialTunnel(deadline time.Time, now int64, u *Upstream) (net.Conn, error) {
	t.requests.Add(1)
	timeout := min(t.pool.settings.ConnectTimeout, time.Until(deadline))
	var conn net.Conn
	var err error
	if timeout <= 0 {
		err = errDialNoTime
	} else {
		conn, _, err = t.pool.connect(timeout)
	}
	if err != nil {
		e := dialError(t.Addr, err)
		t.recordFailure(now, u.passive)
		return nil, e
	}
	t.inflight.Add(1)
	t.tunnels.Add(1)
	return conn, nil
}

// TunnelClosed ends the accounting of a connection from DialTunnel.
func (t *Target) TunnelClosed() {
	t.tunnels.Add(-1)
	t.inflight.Add(-1)
}

// Tunnels is the number of upgraded connections open to the target.
func (t *Target) Tunnels() int64 { return t.tunnels.Load() }

// IsNotSent reports whether err is an upstream failure that happened before the request could
// have reached the upstream.
func IsNotSent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.NotSent()
}

// maxInterim bounds the interim (1xx) responses read before the final one, as Go's HTTP/1.1
// client does: an upstream that sends them without end would otherwise hold the exchange until
// its timeout, each one passed on to the client.
const maxInterim = 5

// zeroStatus reports whether the status line buffered in br has a code from 000 to 099, which
// fasthttp accepts (three digits) and, for 000, reports as 200. It looks at what the next read
// of the head would read anyway.
func zeroStatus(br *bufio.Reader) bool {
	b, err := br.Peek(len("HTTP/1.1 0"))
	return err == nil && b[len(b)-2] == ' ' && b[len(b)-1] == '0'
}

// lengthBesideChunked reports whether a chunked response's head, as buffered before it was
// parsed, also had a Content-Length field, or may have had one: a head that did not come whole
// in the bytes buffered then cannot be looked at, and counts as having one. Only chunked
// responses are looked at: a response with a length pays for the Peek that keeps the bytes.
func lengthBesideChunked(buffered []byte) bool {
	end := bytes.Index(buffered, headEnd)
	if end < 0 {
		return true
	}
	fields := buffered[:end+2]
	fields = fields[bytes.IndexByte(fields, '\n')+1:] // after the status line
	for len(fields) > 0 {
		i := bytes.IndexByte(fields, '\n')
		if i < 0 {
			return false
		}
		name, _, ok := bytes.Cut(fields[:i], colon)
		if ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), contentLengthName) {
			return true
		}
		fields = fields[i+1:]
	}
	return false
}

// firstChunkBroken checks the first chunk-size line of a chunked body when it came with the
// head (it usually does): a broken one fails the exchange now, while the client can still get
// a 502, instead of once the body streams, when the head is gone and all that is left is to
// cut the connection (which a client sees as an empty reply). Nothing is consumed.
func firstChunkBroken(br *bufio.Reader) error {
	buffered, _ := br.Peek(br.Buffered())
	i := bytes.IndexByte(buffered, '\n')
	if i < 0 {
		return nil // not here yet: the body stream reads it
	}
	_, err := parseChunkSize(buffered[:i+1])
	return err
}

var (
	headEnd           = []byte("\r\n\r\n")
	colon             = []byte(":")
	contentLengthName = []byte("content-length")
)

// spaceInName reports whether a field name of h holds a space. A field name is a token (RFC
// 9110, section 5.1), and such a name would reach an HTTP/1.1 client as the upstream wrote it
// and fail the response for an HTTP/2 one; nginx's and HAProxy's parsers refuse it too.
func spaceInName(h *fasthttp.ResponseHeader) bool {
	for name := range h.All() {
		if bytes.IndexByte(name, ' ') >= 0 {
			return true
		}
	}
	return false
}
