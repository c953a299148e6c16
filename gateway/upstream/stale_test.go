package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

// keepAliveServer is a net/http server that closes a keep-alive connection after idle of its
// IdleTimeout, as Node.js does after 5 s, and reports every connection it closed.
type keepAliveServer struct {
	addr   string
	closed chan struct{} // one value per connection the server closed
	served atomic.Int64
	pair   sync.WaitGroup // requests to /pair wait for each other: two connections at once
}

func startKeepAliveServer(t *testing.T, idle time.Duration) *keepAliveServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &keepAliveServer{addr: ln.Addr().String(), closed: make(chan struct{}, 64)}
	s.pair.Add(2)
	srv := &http.Server{
		IdleTimeout: idle,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.served.Add(1)
			if r.URL.Path == "/pair" {
				s.pair.Done()
				s.pair.Wait()
			}
			_, _ = w.Write([]byte("ok"))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				s.closed <- struct{}{}
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// waitClosed waits until the server has closed n connections: the condition itself, not a pause
// long enough for it.
func (s *keepAliveServer) waitClosed(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream never closed its idle keep-alive connection")
		}
	}
}

// opaqueConn hides the socket behind a net.Conn, as a TLS connection does: checkout cannot ask
// the kernel about it, so a closed idle connection is only found by using it.
type opaqueConn struct{ net.Conn }

func opaqueDial(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return opaqueConn{c}, nil
}

// TestIdleConnectionClosedByUpstreamIsFoundAtCheckout: the upstream's keep-alive timeout is far
// shorter than idle_conn_timeout. The kernel already knows the connection is closed; checkout
// asks it and dials anew instead of writing the request into a dead connection.
func TestIdleConnectionClosedByUpstreamIsFoundAtCheckout(t *testing.T) {
	b := startKeepAliveServer(t, 20*time.Millisecond)
	tg := newTarget("app", b.addr, 1, testSettings())
	for round := range 3 {
		if _, err := get(t, tg, "/"); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		b.waitClosed(t, 1)
	}
	s := tg.Stats()
	if s.PeerClosed != 2 || s.Dials != 3 || s.Failures != 0 {
		t.Fatalf("stats %+v: want 2 connections found closed at checkout, 3 dials, no failures", s)
	}
}

// TestStaleKeepAliveIsReported: where the kernel cannot be asked (a TLS-like connection), a
// request on a connection the upstream closed is written into the kernel's buffer and then reads
// EOF. That is KindStale with Written set: safe to repeat for idempotent methods only, and not
// the target's fault. The repeat asks for a fresh connection and gets one, even with more dead
// connections idle in the pool.
func TestStaleKeepAliveIsReported(t *testing.T) {
	b := startKeepAliveServer(t, 20*time.Millisecond)
	s := testSettings()
	s.Dial = opaqueDial
	tg := newTarget("app", b.addr, 1, s)

	req := func(x *RoundTrip) error {
		r := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(r)
		r.SetRequestURI("/")
		r.Header.SetHost("backend")
		return tg.Do(r, &fasthttp.Response{}, x)
	}
	// Two connections in the pool: two requests that wait for each other at the upstream.
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- get2(tg, "/pair") }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	b.waitClosed(t, 2)

	err := req(newRoundTrip(2 * time.Second))
	if kindOf(err) != KindStale || IsNotSent(err) {
		t.Fatalf("request on a connection the upstream closed: %v (kind %v), want KindStale, written", err, kindOf(err))
	}
	if tg.Stats().Failures != 0 {
		t.Fatal("a stale keep-alive connection counted as a target failure")
	}
	// The repeat: a newly dialled connection although another idle one is in the pool.
	x := newRoundTrip(2 * time.Second)
	x.Fresh = true
	if err := req(x); err != nil {
		t.Fatalf("repeat on a fresh connection: %v", err)
	}
	if d := tg.Stats().Dials; d != 3 {
		t.Fatalf("%d dials, want 3: the repeat must dial, not take the other dead idle connection", d)
	}
}

func get2(tg *Target, path string) error {
	r := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(r)
	r.SetRequestURI(path)
	r.Header.SetHost("backend")
	return tg.Do(r, &fasthttp.Response{}, newRoundTrip(5*time.Second))
}

// rawServer answers every request on a connection with the bytes answer returns for it, in one
// write, and then signals wrote: an upstream whose framing is broken in ways net/http and
// fasthttp servers never produce.
func rawServer(t *testing.T, answer func(n int) []string) (addr string, wrote chan struct{}) {
	t.Helper()
	wrote = make(chan struct{}, 64)
	addr = testenv.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			for _, part := range answer(n) {
				if _, err := io.WriteString(c, part); err != nil {
					return
				}
			}
			wrote <- struct{}{}
		}
	})
	return addr, wrote
}

// TestBytesPastContentLengthCloseTheConnection: an upstream that sends more than its
// Content-Length leaves bytes on the connection that the next request would read as its
// response. Bytes that came with the response are found in the read buffer at release; bytes
// that came after it are found by the checkout's check of a connection idle for
// idleCheckAfter, which is how long the test waits. (A connection taken again sooner is not
// asked: the check is a system call per request. TestBodyAfterABodilessAnswerIsFound covers
// the case where the gateway can know to ask.)
func TestBytesPastContentLengthCloseTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []string
	}{
		{"same write", []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"}},
		{"later write", []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"}},
		{"streamed body", []string{"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("a", 70000) + "garbage"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, wrote := rawServer(t, func(int) []string { return tc.parts })
			tg := newTarget("app", addr, 1, testSettings())
			for i := range 3 {
				resp, err := get(t, tg, "/")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body := resp.Body() // reads a streamed body to its end and closes the stream
				if string(body) != "ok" && len(body) != 70000 {
					t.Fatalf("request %d: body %q", i, body)
				}
				<-wrote // every byte of this answer is on its way
				time.Sleep(idleCheckAfter + time.Millisecond)
			}
			if s := tg.Stats(); s.Dials != 3 || s.OpenConns > 1 {
				t.Fatalf("stats %+v: each connection with stray bytes must be closed (3 dials)", s)
			}
		})
	}
}

// TestBodyAfterABodilessAnswerIsFound: an answer to HEAD (or a 204 or 304) has no body whatever
// its Content-Length says; an upstream that sends one anyway, even in a later write, leaves it
// on the connection. The next checkout asks the kernel about such a connection at once, not
// only after idleCheckAfter, so the next request never reads that body as its answer.
func TestBodyAfterABodilessAnswerIsFound(t *testing.T) {
	for _, tc := range []struct {
		name, method, head string
	}{
		{"HEAD", fasthttp.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
		{"204", fasthttp.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n"},
		{"304", fasthttp.MethodGet, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answered atomic.Int32 // across connections
			wrote := make(chan struct{}, 4)
			addr := testenv.ServeTCP(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_ = req.Body.Close()
					if answered.Add(1) > 1 {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					_, _ = io.WriteString(c, tc.head)
					// The stray answer comes in a later segment, after the gateway has read
					// the head and given the connection back: one that came with the head
					// would be found left over in the read buffer.
					time.Sleep(2 * time.Millisecond)
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
					wrote <- struct{}{}
				}
			})
			tg := newTarget("app", addr, 1, testSettings())
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.Header.SetMethod(tc.method)
			req.SetRequestURI("/")
			req.Header.SetHost("backend")
			x := newRoundTrip(5 * time.Second)
			x.Head = tc.method == fasthttp.MethodHead
			if err := tg.Do(req, &fasthttp.Response{}, x); err != nil {
				t.Fatal(err)
			}
			<-wrote // the stray answer has been written: it waits in the socket, not yet read
			resp, err := get(t, tg, "/")
			if err != nil || string(resp.Body()) != "ok" {
				t.Fatalf("the next request: %v %q, want \"ok\" on a new connection", err, resp.Body())
			}
			if s := tg.Stats(); s.Dials != 2 {
				t.Fatalf("stats %+v: the connection with a stray body must not be reused", s)
			}
		})
	}
}
