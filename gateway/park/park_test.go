//go:build linux

package park_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/park"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

const delay = 100 * time.Millisecond

// serve runs a fasthttp server the way the gateway does (streamed bodies, pooled buffers)
// behind a parking listener on ln.
func serve(t *testing.T, ln net.Listener, handler fasthttp.RequestHandler) (*park.Parker, *park.Listener, *fasthttp.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := park.New(ctx, delay, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl := p.Listener(delay)
	srv := &fasthttp.Server{
		Handler:               handler,
		ReadTimeout:           10 * time.Second,
		IdleTimeout:           60 * time.Second,
		ReduceMemoryUsage:     true,
		StreamRequestBody:     true,
		MaxIdleWorkerDuration: delay,
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			if pc, ok := c.(*park.Conn); ok {
				pc.ConnState(st)
			}
		},
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(pl.Wrap(ln)) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-served
		cancel()
		_ = p.Close()
	})
	return p, pl, srv
}

func hello(ctx *fasthttp.RequestCtx) { ctx.WriteString("hello " + string(ctx.RequestURI())) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a guard against hanging, not a timing claim
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, uri string) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+uri+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

func TestParkAndWake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, pl, _ := serve(t, ln, hello)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, uri := range []string{"/a", "/b", "/c"} {
		if got := roundTrip(t, c, br, uri); got != "hello "+uri {
			t.Fatalf("%s: %q", uri, got)
		}
		waitFor(t, "the connection to park", func() bool { return pl.Parked() == 1 })
		if s := pl.Stats(); s.Parks != uint64(i+1) || s.Wakes != uint64(i) {
			t.Fatalf("after %s: %+v", uri, s)
		}
	}
	c.Close()
	waitFor(t, "the client's close to free it", func() bool { return pl.Parked() == 0 })
	if s := pl.Stats(); s.Closed[park.ClosedByClient] != 1 {
		t.Fatalf("%+v", s)
	}
}

// TestNoDescriptorNeverParks: a connection with no socket under it (an in-memory pipe) cannot
// be watched, so it is served as without parking.
func TestNoDescriptorNeverParks(t *testing.T) {
	ln := fasthttputil.NewInmemoryListener()
	_, pl, _ := serve(t, ln, hello)
	c, err := ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip(t, c, br, "/1")
	time.Sleep(3 * delay) // long enough to have parked, were it parkable
	if got := roundTrip(t, c, br, "/2"); got != "hello /2" || pl.Stats().Parks != 0 {
		t.Fatalf("%q, %+v", got, pl.Stats())
	}
}

// TestTunnelNeverParks: a hijacked connection (a WebSocket tunnel) stays with its handler
// however long it is quiet.
func TestTunnelNeverParks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, pl, _ := serve(t, ln, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Hijack(func(c net.Conn) { _, _ = io.Copy(c, c) })
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	time.Sleep(3 * delay) // long enough to have parked, were it parkable
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" || pl.Stats().Parks != 0 {
		t.Fatalf("%q %v %+v", got, err, pl.Stats())
	}
}

// TestStopClosesParked: the watcher's context ending closes every parked connection.
func TestStopClosesParked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, pl, _ := serve(t, ln, hello)
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, bufio.NewReader(c), "/x")
		conns = append(conns, c)
	}
	waitFor(t, "3 parked", func() bool { return pl.Parked() == 3 })
	_ = p.Close()
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%v, want EOF", err)
		}
	}
	if s := pl.Stats(); s.Closed[park.ClosedAtShutdown] != 3 || s.Parked != 0 {
		t.Fatalf("%+v", s)
	}
	// A connection that would park now is closed instead.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, bufio.NewReader(c), "/late")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("%v, want the connection closed at its park", err)
	}
}

// TestCrowdedConnectionsParkSooner: while the server serves more connections than the crowd
// bound, a connection that goes idle parks after CrowdedAfter instead of the listener's delay,
// once: woken, it waits for the listener's delay again. Below the bound the delay holds.
func TestCrowdedConnectionsParkSooner(t *testing.T) {
	const long = time.Minute // the listener's delay: nothing parks after it within the test
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := park.New(ctx, delay, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pl := p.Listener(long)
	srv := &fasthttp.Server{
		Handler: hello, ReadTimeout: 10 * time.Second, IdleTimeout: 2 * long,
		ReduceMemoryUsage: true, StreamRequestBody: true, MaxIdleWorkerDuration: delay,
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			if pc, ok := c.(*park.Conn); ok {
				pc.ConnState(st)
			}
		},
	}
	pl.Crowding(srv.GetOpenConnectionsCount, 2)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(pl.Wrap(ln)) }()
	defer func() { _ = srv.Shutdown(); <-served }()

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	// Two connections: the server serves two, not above the bound, so neither parks soon.
	for _, uri := range []string{"/1", "/2"} {
		c, br := dial()
		roundTrip(t, c, br, uri)
	}
	time.Sleep(3 * park.CrowdedAfter)
	if s := pl.Stats(); s.Parks != 0 {
		t.Fatalf("parked below the crowd bound: %+v", s)
	}
	// parksEarly opens a connection, asks first on it, waits for it to park (with the one-minute
	// delay only the crowded one can have passed) and asks next, which wakes it.
	parksEarly := func(which, first, next string) {
		t.Helper()
		c, br := dial()
		roundTrip(t, c, br, first)
		waitFor(t, which+" connection to park", func() bool { return pl.Parked() == 1 })
		if got := roundTrip(t, c, br, next); got != "hello "+next {
			t.Fatalf("woken %s connection answered %q", which, got)
		}
	}
	// A third: three served, above the bound, so it parks after CrowdedAfter.
	parksEarly("the third", "/3", "/4")
	// Woken, it is served again beside the first two (above the bound), but it came back: it
	// now waits for the listener's delay, as the first two do, instead of parking at every
	// pause between its requests.
	time.Sleep(3 * park.CrowdedAfter)
	if s := pl.Stats(); s.Parks != 1 || s.Wakes != 1 || s.Parked != 0 {
		t.Fatalf("a woken connection parked early again: %+v", s)
	}
	// A fourth connection still parks early: the exemption is the returning connection's own.
	parksEarly("the fourth", "/5", "/6")
}
