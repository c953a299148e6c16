package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/valyala/fasthttp"
)

// backend is a real fasthttp server on a loopback port.
type backend struct {
	addr    string
	ln      net.Listener
	srv     *fasthttp.Server
	conns   atomic.Int64 // connections accepted
	handler func(ctx *fasthttp.RequestCtx)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startBackend(t testing.TB, h func(ctx *fasthttp.RequestCtx), tune ...func(*fasthttp.Server)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: ln, handler: h}
	b.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { b.handler(ctx) }, ReadTimeout: 5 * time.Second}
	for _, f := range tune {
		f(b.srv)
	}
	go func() { _ = b.srv.Serve(countingListener{ln, &b.conns}) }()
	t.Cleanup(func() { _ = b.srv.Shutdown() })
	return b
}

func testSettings() Settings {
	return Settings{ConnectTimeout: time.Second, IdleTimeout: 30 * time.Second, QueueTimeout: 200 * time.Millisecond, MaxConns: 8, MaxResponseBytes: 1 << 30}
}

func newRoundTrip(timeout time.Duration) *RoundTrip {
	now := time.Now()
	return &RoundTrip{Deadline: now.Add(timeout), Timeout: timeout, Now: now.UnixNano(), policy: passivePolicy{maxFails: 3, failTimeout: int64(time.Second)}}
}

func get(t *testing.T, tg *Target, path string) (*fasthttp.Response, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(path)
	req.Header.SetHost("backend")
	resp := &fasthttp.Response{}
	err := tg.Do(req, resp, newRoundTrip(2*time.Second))
	return resp, err
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestRoundTripReusesOneConnection(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("hello " + string(ctx.Path())) })
	tg := newTarget("app", b.addr, 1, testSettings())
	for i := range 100 {
		resp, err := get(t, tg, fmt.Sprintf("/r%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(resp.Body()), fmt.Sprintf("hello /r%d", i); got != want {
			t.Fatalf("body %q, want %q", got, want)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections for 100 sequential requests, want 1", n)
	}
	if s := tg.Stats(); s.Dials != 1 || s.InFlight != 0 || s.Requests != 100 || s.OpenConns != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLargeAndChunkedBodiesStreamAndReturnTheConnection(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/big":
			ctx.SetBody(big)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for i := range 50 {
					fmt.Fprintf(w, "chunk %d;", i)
					_ = w.Flush()
				}
			})
		}
	})
	tg := newTarget("app", b.addr, 1, testSettings())
	for _, tc := range []struct {
		path string
		want []byte
	}{
		{"/big", big},
		{"/chunked", func() []byte {
			var buf bytes.Buffer
			for i := range 50 {
				fmt.Fprintf(&buf, "chunk %d;", i)
			}
			return buf.Bytes()
		}()},
	} {
		resp, err := get(t, tg, tc.path)
		if err != nil {
			t.Fatal(err)
		}
		stream := resp.BodyStream()
		if stream == nil {
			t.Fatalf("%s: response was buffered, want a stream", tc.path)
		}
		if tg.InFlight() != 1 {
			t.Fatalf("%s: in flight %d while streaming, want 1", tc.path, tg.InFlight())
		}
		got, err := io.ReadAll(stream)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("%s: read %d bytes, err %v; want %d bytes", tc.path, len(got), err, len(tc.want))
		}
		if err := resp.CloseBodyStream(); err != nil {
			t.Fatal(err)
		}
		if tg.InFlight() != 0 {
			t.Fatalf("%s: in flight %d after close", tc.path, tg.InFlight())
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections, want 1: streamed bodies must return the connection", n)
	}
}

func TestAbandonedStreamClosesTheConnection(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20)
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(big) })
	tg := newTarget("app", b.addr, 1, testSettings())
	resp, err := get(t, tg, "/")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := resp.BodyStream().Read(buf); err != nil {
		t.Fatal(err)
	}
	_ = resp.CloseBodyStream() // the client went away after 1000 bytes
	if s := tg.Stats(); s.OpenConns != 0 || s.InFlight != 0 {
		t.Fatalf("after an abandoned body: %+v; the half-read connection must be closed", s)
	}
	if _, err := get(t, tg, "/"); err != nil {
		t.Fatal(err)
	}
}

func TestPassiveHealthEjectsAndReturnsWithProbation(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	tg := newTarget("app", addr, 1, testSettings())
	now := time.Now().UnixNano()
	policy := passivePolicy{maxFails: 3, failTimeout: int64(time.Second)}
	x := &RoundTrip{Deadline: time.Now().Add(time.Second), Now: now, policy: policy}
	for i := range 3 {
		if !tg.Available(now) {
			t.Fatalf("ejected after %d failures, want 3", i)
		}
		err := tg.Do(fasthttp.AcquireRequest(), &fasthttp.Response{}, x)
		if kindOf(err) != KindConnect || !IsNotSent(err) {
			t.Fatalf("refused connection: %v", err)
		}
	}
	if tg.Available(now) || tg.Health(now) != Ejected || tg.Stats().Ejections != 1 {
		t.Fatalf("not ejected after 3 failures: %v %+v", tg.Health(now), tg.Stats())
	}
	later := now + int64(time.Second) + 1
	if !tg.Available(later) {
		t.Fatal("still ejected after fail_timeout")
	}
	// Probation: one more failure ejects again at once.
	tg.recordFailure(later, policy)
	if tg.Available(later) || tg.Stats().Ejections != 2 {
		t.Fatal("a failure on probation did not eject again")
	}
	// A success on probation clears it: failures count from zero again.
	evenLater := later + int64(time.Second) + 1
	tg.recordSuccess()
	tg.recordFailure(evenLater, policy)
	if !tg.Available(evenLater) {
		t.Fatal("one failure after a success ejected the target")
	}
	// Failures spread wider than fail_timeout never add up to an ejection.
	tg2 := newTarget("app", addr, 1, testSettings())
	for i := range 10 {
		tg2.recordFailure(now+int64(i)*int64(2*time.Second), policy)
	}
	if tg2.Stats().Ejections != 0 {
		t.Fatal("failures spread over many windows ejected the target")
	}
	// max_fails 0 turns passive health off.
	tg3 := newTarget("app", addr, 1, testSettings())
	for range 10 {
		tg3.recordFailure(now, passivePolicy{maxFails: 0, failTimeout: int64(time.Second)})
	}
	if !tg3.Available(now) {
		t.Fatal("max_fails 0 ejected the target")
	}
}

func TestTimeoutsAndLimits(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4) // one value per /slow request the backend is holding
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/slow":
			entered <- struct{}{}
			<-release
		case "/huge":
			ctx.Response.Header.SetContentLength(10 << 20)
			ctx.SetBody(bytes.Repeat([]byte("x"), 10<<20))
		}
		ctx.WriteString("ok")
	})
	t.Cleanup(func() { close(release) })
	s := testSettings()
	s.MaxResponseBytes = 1 << 20
	s.MaxConns = 1
	s.QueueTimeout = 50 * time.Millisecond
	tg := newTarget("app", b.addr, 1, s)

	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/slow")
	req.Header.SetHost("b")
	start := time.Now()
	err := tg.Do(req, &fasthttp.Response{}, newRoundTrip(100*time.Millisecond))
	if kindOf(err) != KindTimeout || time.Since(start) > time.Second {
		t.Fatalf("slow upstream: %v after %v, want KindTimeout after about 100ms", err, time.Since(start))
	}
	<-entered

	if _, err := get(t, tg, "/huge"); kindOf(err) != KindTooLarge {
		t.Fatalf("10 MiB response with a 1 MiB limit: %v, want KindTooLarge", err)
	}

	// With MaxConns 1 held by a slow request, the next one waits queue_timeout and gives up.
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("/slow")
		req.Header.SetHost("b")
		_ = tg.Do(req, &fasthttp.Response{}, newRoundTrip(500*time.Millisecond))
	}()
	<-entered // the upstream holds the request, so it holds the one connection
	if _, err := get(t, tg, "/"); kindOf(err) != KindNoFreeConns || !IsNotSent(err) {
		t.Fatalf("at MaxConns: %v, want KindNoFreeConns", err)
	}
	<-done
}

func TestDrainClosesIdleNowAndBusyOnRelease(t *testing.T) {
	hold := make(chan struct{})
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/hold" {
			<-hold
		}
		ctx.WriteString("ok")
	})
	tg := newTarget("app", b.addr, 1, testSettings())
	if _, err := get(t, tg, "/"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var busyErr error
	go func() {
		defer wg.Done()
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("/hold")
		req.Header.SetHost("b")
		busyErr = tg.Do(req, &fasthttp.Response{}, newRoundTrip(2*time.Second))
	}()
	for tg.Stats().OpenConns < 1 || tg.InFlight() < 1 {
		time.Sleep(time.Millisecond)
	}
	tg.pool.drain()
	if tg.Health(time.Now().UnixNano()) != Draining {
		t.Fatal("not draining")
	}
	close(hold)
	wg.Wait()
	if busyErr != nil {
		t.Fatalf("the in-flight request failed during the drain: %v", busyErr)
	}
	if open := tg.Stats().OpenConns; open != 0 {
		t.Fatalf("%d connections open after the drain completed", open)
	}
}

func TestRegistryReusesTargetsAcrossBuilds(t *testing.T) {
	r := NewRegistry(nil, nil)
	cfg := func(extra string) *config.Config {
		c, err := config.Parse([]byte(`
upstreams:
  app:
    targets: ["127.0.0.1:1001", {addr: "127.0.0.1:1002", weight: 2}]
`+extra+`
routes: [{name: r, match: {path_prefix: /}, upstream: app}]
`), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	u1, _ := r.Build("app", cfg("").Upstreams["app"], nil)
	r.Commit([]*Upstream{u1})
	u2, _ := r.Build("app", cfg("    balance: round_robin").Upstreams["app"], nil)
	if u1.Targets()[0] != u2.Targets()[0] || u1.Targets()[1] != u2.Targets()[1] {
		t.Fatal("a policy change replaced the targets; their pools must be kept")
	}
	if u2.Targets()[1].Weight() != 2 {
		t.Fatal("weight lost")
	}
	r.Commit([]*Upstream{u2})
	u3, _ := r.Build("app", cfg("    connect_timeout: 1s").Upstreams["app"], nil)
	if u3.Targets()[0] == u2.Targets()[0] {
		t.Fatal("a connection setting changed but the old target (and its pool) was kept")
	}
	r.Commit([]*Upstream{u3})
	if u2.Targets()[0].Health(time.Now().UnixNano()) != Draining {
		t.Fatal("the replaced target is not draining after commit")
	}
	if len(r.targets) != 2 {
		t.Fatalf("registry holds %d targets, want 2", len(r.targets))
	}
}

func TestChunkSizeParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		size int64
		ok   bool
	}{
		{"a\r\n", 10, true}, {"1F;ext=1\r\n", 31, true}, {"0\r\n", 0, true}, {"ff \t\r\n", 255, true},
		{"ff\n", 0, false}, {"f\rf\r\n", 0, false}, {"a x\r\n", 0, false}, {"a ;x\r\n", 0, false}, {"a;x\ry\r\n", 0, false},
		{"\r\n", 0, false}, {"zz\r\n", 0, false}, {";x\r\n", 0, false},
		{"1000000000000000\r\n", 0, false}, {"-1\r\n", 0, false}, {"12", 0, false},
	} {
		size, err := readChunkSize(bufio.NewReader(strings.NewReader(tc.in)))
		if (err == nil) != tc.ok || (tc.ok && size != tc.size) {
			t.Errorf("readChunkSize(%q) = %d, %v", tc.in, size, err)
		}
	}
}

func FuzzChunkedBody(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: v\r\n\r\n"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		s := &bodyStream{framing: framingChunked, limit: 1 << 20, pc: &pconn{br: bufio.NewReaderSize(bytes.NewReader(wire), 256)}}
		buf := make([]byte, 7)
		total := 0
		for range 10000 {
			n, err := s.readChunked(buf)
			total += n
			if n < 0 || n > len(buf) {
				t.Fatalf("read %d into %d bytes", n, len(buf))
			}
			if err != nil {
				break
			}
		}
		if total > len(wire) {
			t.Fatalf("decoded %d bytes from %d on the wire", total, len(wire))
		}
	})
}

var kilobyte = bytes.Repeat([]byte("x"), 1024)

func BenchmarkTargetDo(b *testing.B) {
	bk := startBackend(b, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(kilobyte) })
	tg := newTarget("app", bk.addr, 1, testSettings())
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/x")
	req.Header.SetHost("b")
	resp := &fasthttp.Response{}
	x := newRoundTrip(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if err := tg.Do(req, resp, x); err != nil {
			b.Fatal(err)
		}
	}
}

// deadlineCountingConn counts the deadlines that reach an upstream socket.
type deadlineCountingConn struct {
	net.Conn
	sets *atomic.Int32
}

func (c deadlineCountingConn) SetDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.Conn.SetDeadline(t)
}

func (c deadlineCountingConn) SetReadDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.Conn.SetReadDeadline(t)
}

func (c deadlineCountingConn) SetWriteDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

// TestDeadlinesAreArmedLazily: requests on one pooled connection whose deadlines fall within
// the slack of the armed one leave the socket's deadline alone; a request with a shorter
// timeout re-arms it and still times out.
func TestDeadlinesAreArmedLazily(t *testing.T) {
	release := make(chan struct{})
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			<-release
		}
		ctx.WriteString("ok")
	})
	t.Cleanup(func() { close(release) })
	var sets atomic.Int32
	s := testSettings()
	s.MaxConns = 1
	s.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		return deadlineCountingConn{c, &sets}, nil
	}
	tg := newTarget("app", b.addr, 1, s)
	do := func(path string, x *RoundTrip) error {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI(path)
		req.Header.SetHost("backend")
		return tg.Do(req, &fasthttp.Response{}, x)
	}

	x := newRoundTrip(10 * time.Second) // slack: MaxDeadlineSlack
	for range 50 {
		if err := do("/", x); err != nil {
			t.Fatal(err)
		}
	}
	later := *x
	later.Deadline = x.Deadline.Add(protocol.MaxDeadlineSlack / 2)
	for range 50 {
		if err := do("/", &later); err != nil {
			t.Fatal(err)
		}
	}
	if n := sets.Load(); n != 1 {
		t.Fatalf("100 requests with deadlines within the slack set the socket's deadline %d times, want 1", n)
	}

	if err := do("/slow", newRoundTrip(100*time.Millisecond)); kindOf(err) != KindTimeout {
		t.Fatalf("slow upstream after lazily armed deadlines: %v, want KindTimeout", err)
	}
	if n := sets.Load(); n != 2 {
		t.Fatalf("a shorter timeout set the socket's deadline %d times in all, want 2", n)
	}
}

// TestSlowAnswerIdlesFromItsRelease: a connection's idle time starts when Do releases it, not
// when the exchange started, so an answer slower than idleCheckAfter does not make the next
// checkout ask the kernel about a connection released a moment ago. Do reports the release
// time, which the proxy takes the exchange's duration from.
func TestSlowAnswerIdlesFromItsRelease(t *testing.T) {
	const slow = 3 * idleCheckAfter
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(slow)
		ctx.WriteString("late")
	})
	tg := newTarget("app", b.addr, 1, testSettings())
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("/")
	req.Header.SetHost("backend")
	var resp fasthttp.Response
	x := newRoundTrip(2 * time.Second)
	if err := tg.Do(req, &resp, x); err != nil {
		t.Fatal(err)
	}
	if took := x.Released.Sub(time.Unix(0, x.Now)); took < slow {
		t.Fatalf("released %v after the start, before the answer came (%v)", took, slow)
	}
	pc := tg.pool.popIdle(x.Released.UnixNano())
	if pc == nil {
		t.Fatal("the connection is not idle in the pool")
	}
	defer tg.pool.release(pc, true, time.Now().UnixNano())
	if pc.lastUsed != x.Released.UnixNano() {
		t.Fatalf("idle since %v, released at %v: stamped with the exchange's start", time.Unix(0, pc.lastUsed), x.Released)
	}
	// A failed exchange leaves Released zero, so the caller never reads the one before.
	b.handler = func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {})
	}
	x.Now = time.Now().UnixNano()
	if err := tg.Do(req, &resp, x); err == nil {
		t.Fatal("an exchange with no answer succeeded")
	}
	if !x.Released.IsZero() {
		t.Fatalf("Released %v after a failed exchange", x.Released)
	}
}
