//go:build linux || darwin || freebsd || netbsd || openbsd

package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func newConn(c net.Conn) *Conn { return &Conn{Passthrough: Passthrough{c}} }

// waitEvents counts what write-and-wait did, for every connection of the package's tests (they
// run one after the other).
var waitEvents [eventLostReadiness + 1]atomic.Int64

func TestMain(m *testing.M) {
	testHook = func(e waitEvent) { waitEvents[e].Add(1) }
	os.Exit(m.Run())
}

// events reads the counters; since returns how much one grew from a reading.
type events [eventLostReadiness + 1]int64

func readEvents() (e events) {
	for i := range e {
		e[i] = waitEvents[i].Load()
	}
	return e
}

func (e events) since(e0 events, ev waitEvent) int64 { return e[ev] - e0[ev] }

// waitListener wraps accepted connections the way the gateway's transparent wrappers do.
type waitListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l waitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// transparentWrapper is a wrapper like parking's or the connection caps'.
type transparentWrapper struct{ Transparent }

// opaqueWrapper keeps bytes (like a PROXY header reader): nothing is held above it.
type opaqueWrapper struct{ Passthrough }

// serveWaiting serves handler with fasthttp configured as the gateway configures it, on a
// loopback listener whose connections are *Conn with write-and-wait on, and returns its address.
func serveWaiting(t *testing.T, recheck time.Duration, wrap func(net.Conn) net.Conn, handler fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var inner net.Listener = waitListener{ln, func(c net.Conn) net.Conn { return &transparentWrapper{TransparentTo(c)} }}
	if wrap != nil {
		inner = waitListener{ln, wrap}
	}
	s := &fasthttp.Server{
		Handler:           handler,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		ReadBufferSize:    16 << 10,
		WriteBufferSize:   16 << 10,
		ReduceMemoryUsage: true,
		StreamRequestBody: true,
		CloseOnShutdown:   true,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(Listener{Listener: inner, WriteWait: recheck})
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func dialWaiting(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Generous: the waits under test are 30 s (fasthttp's idle timeout) when the re-check
	// delay does not work, and a few milliseconds when it does.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func readBody(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("reading a body: %v", err)
	}
	return string(b)
}

func echoPath(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("you asked for " + string(ctx.Path())) }

func TestWriteAndWaitKeepAlive(t *testing.T) {
	addr := serveWaiting(t, time.Second, nil, echoPath)
	c := dialWaiting(t, addr)
	br := bufio.NewReader(c)
	e0 := readEvents()
	const n = 20
	for i := range n {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if got, want := readBody(t, br), fmt.Sprintf("you asked for /%d", i); got != want {
			t.Fatalf("response %d: %q, want %q", i, got, want)
		}
	}
	// Every response was held and written by the read for the next request.
	if got := readEvents().since(e0, eventWait); got != n {
		t.Fatalf("%d of %d responses were written by the wait for the next request", got, n)
	}
}

func TestWriteAndWaitPipelined(t *testing.T) {
	addr := serveWaiting(t, time.Second, nil, echoPath)
	c := dialWaiting(t, addr)
	br := bufio.NewReader(c)
	// Three requests in one write (fasthttp finds the next in its buffer), then two in
	// separate writes before reading: answers come back whole and in order.
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	fmt.Fprint(c, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
	fmt.Fprint(c, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e"} {
		if got := readBody(t, br); got != "you asked for "+p {
			t.Fatalf("got %q, want the answer to %s", got, p)
		}
	}
	fmt.Fprint(c, "GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if got := readBody(t, br); got != "you asked for /f" {
		t.Fatalf("got %q", got)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last answer: %q, %v; want the connection closed", rest, err)
	}
}

// A request the client sends before it has the previous answer may have its readiness
// collected by the netpoller while the handler runs; the wait's clearing forgets it. The
// re-check delay finds it: without it the request would wait for fasthttp's idle timeout.
func TestWriteAndWaitFindsARequestSentAhead(t *testing.T) {
	started, sent := make(chan struct{}, 1), make(chan struct{}, 1)
	addr := serveWaiting(t, 5*time.Millisecond, nil, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/first" {
			started <- struct{}{}
			<-sent
			// Idle for a moment, so the netpoller collects the second request's readiness
			// now (it then is lost to the wait's clearing). How long does not matter to the
			// outcome, only to whether the case under test happens; the loop below repeats it.
			time.Sleep(2 * time.Millisecond)
		}
		echoPath(ctx)
	})
	e0 := readEvents()
	for i := 0; i < 20 && readEvents().since(e0, eventLostReadiness) == 0; i++ {
		c := dialWaiting(t, addr)
		br := bufio.NewReader(c)
		fmt.Fprint(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
		<-started // fasthttp has read /first: /second comes apart from it
		fmt.Fprint(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
		sent <- struct{}{}
		if got := readBody(t, br); got != "you asked for /first" {
			t.Fatalf("got %q", got)
		}
		if got := readBody(t, br); got != "you asked for /second" {
			t.Fatalf("got %q", got)
		}
		// The connection carries on (the ordinary way, once readiness was lost on it).
		fmt.Fprint(c, "GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
		if got := readBody(t, br); got != "you asked for /third" {
			t.Fatalf("got %q", got)
		}
		_ = c.Close()
	}
	if readEvents().since(e0, eventLostReadiness) == 0 {
		t.Fatal("in 20 tries the netpoller never collected the second request's readiness before the wait: the case under test did not happen")
	}
}

// A client that half-closes after its request and reads to end-of-file gets the answer and the
// close, not fasthttp's idle timeout.
func TestWriteAndWaitHalfClose(t *testing.T) {
	addr := serveWaiting(t, 5*time.Millisecond, nil, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(2 * time.Millisecond) // lets the netpoller collect the end-of-file first (see above)
		echoPath(ctx)
	})
	for range 3 {
		c := dialWaiting(t, addr)
		fmt.Fprint(c, "GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading to end-of-file: %v (got %q)", err, all)
		}
		if !strings.HasSuffix(string(all), "you asked for /bye") {
			t.Fatalf("got %q", all)
		}
	}
}

// A send buffer too small for a held response: the callback writes what fits, the rest goes
// the ordinary way under the write deadline, and every answer arrives whole and in order.
func TestWriteAndWaitSendBufferFull(t *testing.T) {
	pad := strings.Repeat("x", 3500)
	addr := serveWaiting(t, time.Second, func(c net.Conn) net.Conn {
		_ = c.(*net.TCPConn).SetWriteBuffer(1) // the kernel's minimum
		return &transparentWrapper{TransparentTo(c)}
	}, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(string(ctx.Path()) + pad)
	})
	c := dialWaiting(t, addr)
	_ = c.SetReadBuffer(1)
	e0 := readEvents()
	sent := 0
	// One request at a time, each once the previous answer is held and the server waits for
	// it, until a held answer no longer fits; the client reads nothing until then.
	giveUp := time.Now().Add(10 * time.Second)
	for ; sent < 200 && readEvents().since(e0, eventSendBufferFull) == 0; sent++ {
		fmt.Fprintf(c, "GET /%04d HTTP/1.1\r\nHost: x\r\n\r\n", sent)
		for readEvents().since(e0, eventWait) < int64(sent+1) && readEvents().since(e0, eventSendBufferFull) == 0 {
			if time.Now().After(giveUp) {
				t.Fatalf("request %d: the server never waited for the next", sent)
			}
			runtime.Gosched()
		}
	}
	if readEvents().since(e0, eventSendBufferFull) == 0 {
		t.Fatalf("%d answers of 3.5 KiB fitted the minimal buffers", sent)
	}
	br := bufio.NewReader(c)
	for i := range sent {
		if got, want := readBody(t, br), fmt.Sprintf("/%04d", i)+pad; got != want {
			t.Fatalf("answer %d: %d bytes starting %q, want %d starting %q", i, len(got), got[:min(len(got), 8)], len(want), want[:8])
		}
	}
}

// A Connection: close answer is held too; Close writes it before closing.
func TestWriteAndWaitCloseWritesTheHeldAnswer(t *testing.T) {
	addr := serveWaiting(t, time.Second, nil, func(ctx *fasthttp.RequestCtx) {
		echoPath(ctx)
		ctx.SetConnectionClose()
	})
	c := dialWaiting(t, addr)
	fmt.Fprint(c, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	all, err := io.ReadAll(c)
	if err != nil || !strings.HasSuffix(string(all), "you asked for /last") {
		t.Fatalf("got %q, %v", all, err)
	}
}

// Over an opaque wrapper, a TLS-like or PROXY-like one, nothing is held.
func TestWriteAndWaitOnlyUnderTransparentWrappers(t *testing.T) {
	addr := serveWaiting(t, time.Second, func(c net.Conn) net.Conn { return &opaqueWrapper{Passthrough{c}} }, echoPath)
	c := dialWaiting(t, addr)
	br := bufio.NewReader(c)
	e0 := readEvents()
	for i := range 3 {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if got := readBody(t, br); got != fmt.Sprintf("you asked for /%d", i) {
			t.Fatalf("got %q", got)
		}
	}
	if got := readEvents().since(e0, eventWait); got != 0 {
		t.Fatalf("%d answers held over an opaque wrapper", got)
	}
	for _, tc := range []struct {
		name string
		c    func(net.Conn) net.Conn
		on   bool
	}{
		{"socket", func(c net.Conn) net.Conn { return c }, true},
		{"two transparent wrappers", func(c net.Conn) net.Conn {
			return &transparentWrapper{TransparentTo(&transparentWrapper{TransparentTo(c)})}
		}, true},
		{"opaque over transparent", func(c net.Conn) net.Conn {
			return &opaqueWrapper{Passthrough{&transparentWrapper{TransparentTo(c)}}}
		}, false},
	} {
		server, _ := socketPair(t)
		if got := socketBelow(tc.c(server)) != nil; got != tc.on {
			t.Errorf("%s: on %t, want %t", tc.name, got, tc.on)
		}
	}
	a, _ := net.Pipe()
	if socketBelow(a) != nil {
		t.Error("an in-memory connection has a socket")
	}
}

// socketPair is a connected loopback pair: the gateway's side and the client's.
func socketPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	return server.(*net.TCPConn), client.(*net.TCPConn)
}

const (
	answer1 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
	answer2 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"
)

// The state machine, call by call, as fasthttp and the gateway make the calls: what is held
// after each call, and the bytes the client receives in the end, in order.
func TestWriteAndWaitStates(t *testing.T) {
	later := time.Now().Add(time.Minute)
	type op struct {
		call  string
		state uint8 // after the call
	}
	for _, tc := range []struct {
		name string
		ops  []op
		want string // what the client reads, to end-of-file
	}{
		{"a held answer is written by the read that waits", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"rdeadline", holdArmed}, {"read", holdNone}, {"close", holdNone}}, answer1},
		{"a second read deadline (pipelined request) writes it", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"rdeadline", holdArmed}, {"rdeadline", holdNone}, {"close", holdNone}}, answer1},
		{"only the first write after the write deadline is held", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"write2", holdNone}, {"close", holdNone}}, answer1 + answer2},
		{"a write without the write deadline before it is not held", []op{{"write1", holdNone}, {"close", holdNone}}, answer1},
		{"the write deadline writes it", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"wdeadline", holdNone}, {"write2", holdHeld}, {"close", holdNone}}, answer1 + answer2},
		{"a read that was not armed writes it first", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"read", holdNone}, {"close", holdNone}}, answer1},
		{"close writes it", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"rdeadline", holdArmed}, {"close", holdNone}}, answer1},
		{"deadline writes it", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"deadline", holdNone}, {"close", holdNone}}, answer1},
		{"looking through the wrapper writes it", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"rdeadline", holdArmed}, {"netconn", holdNone}, {"close", holdNone}}, answer1},
		{"an upgrade writes it and holds nothing after", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"upgraded", holdNone}, {"wdeadline", holdNone}, {"write2", holdNone}, {"close", holdNone}}, answer1 + answer2},
		{"sendfile writes it first", []op{{"wdeadline", holdNone}, {"write1", holdHeld}, {"readfrom2", holdNone}, {"close", holdNone}}, answer1 + answer2},
		{"a half answer is not held", []op{{"wdeadline", holdNone}, {"writehalf", holdNone}, {"close", holdNone}}, answer1[:20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := socketPair(t)
			c := newConn(server)
			c.enableWait(time.Second)
			if c.w.raw == nil {
				t.Fatal("write-and-wait is off on a socket")
			}
			for i, o := range tc.ops {
				var err error
				switch o.call {
				case "wdeadline":
					err = c.SetWriteDeadline(later)
				case "rdeadline":
					err = c.SetReadDeadline(later)
				case "deadline":
					err = c.SetDeadline(later)
				case "write1":
					_, err = c.Write([]byte(answer1))
				case "write2":
					_, err = c.Write([]byte(answer2))
				case "writehalf":
					_, err = c.Write([]byte(answer1[:20]))
				case "read":
					// The client's next request comes once it has the answer.
					go func() {
						b := make([]byte, len(answer1))
						if _, err := io.ReadFull(client, b); err == nil {
							_, _ = client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
						}
					}()
					b := make([]byte, 64)
					var n int
					n, err = c.Read(b)
					if err == nil && string(b[:n]) != "GET / HTTP/1.1\r\n\r\n" {
						t.Fatalf("read %q", b[:n])
					}
					tc.want = tc.want[len(answer1):] // the goroutine above took it
				case "close":
					err = c.Close()
				case "netconn":
					_ = c.NetConn()
				case "upgraded":
					c.Upgraded()
				case "readfrom2":
					_, err = c.ReadFrom(strings.NewReader(answer2))
				}
				if err != nil {
					t.Fatalf("call %d (%s): %v", i, o.call, err)
				}
				if o.call != "close" && c.w.state != o.state { // Close may come from any goroutine: it leaves the serving goroutine's state alone
					t.Fatalf("after call %d (%s): state %d, want %d", i, o.call, c.w.state, o.state)
				}
			}
			got, err := io.ReadAll(client)
			if err != nil || string(got) != tc.want {
				t.Fatalf("the client read %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A write that fails in the callback (the client reset the connection) is returned by the read
// that performed it.
func TestWriteAndWaitWriteError(t *testing.T) {
	server, client := socketPair(t)
	c := newConn(server)
	c.enableWait(time.Second)
	_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write([]byte(answer1)); err != nil || c.w.state != holdHeld {
		t.Fatalf("write: %v, state %d", err, c.w.state)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	_ = client.SetLinger(0)
	_ = client.Close() // a reset
	// Wait until the reset has arrived: a peek then reports it (and clears it: the write then
	// fails with EPIPE instead of ECONNRESET, a write error all the same).
	raw, _ := server.SyscallConn()
	for {
		var perr error
		_ = raw.Control(func(fd uintptr) {
			_, _, perr = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		if perr != nil && !errors.Is(perr, syscall.EAGAIN) {
			break
		}
		runtime.Gosched()
	}
	e0 := readEvents()
	n, err := c.Read(make([]byte, 64))
	var op *net.OpError
	if n != 0 || !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("read after a failed write: %d, %v; want the write's error", n, err)
	}
	if readEvents().since(e0, eventWriteError) != 1 || c.w.state != holdNone {
		t.Fatalf("write error not reported by the callback (state %d)", c.w.state)
	}
}

func TestWholeResponse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{answer1, true},
		{"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length:  3 \r\nX: y\r\n\r\none", true},
		{"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n", true},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", true},
		{"HTTP/1.1 100 Continue\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\none", false},         // body still to come
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\noneHTTP/1.1", false}, // more than one
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false},            // a HEAD answer: no rule for it
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\none", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\none", false},
		{"HTTP/1.1 200 OK\r\n\r\none", false}, // to end-of-file
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", false},
		{"3\r\none\r\n", false},
		{"", false},
	} {
		if got := wholeResponse([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: %t, want %t", tc.in, got, tc.want)
		}
	}
}

func FuzzWholeResponse(f *testing.F) {
	f.Add([]byte(answer1))
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !wholeResponse(b) {
			return
		}
		// A whole response is exactly one: a byte more or a byte less is not (held, a part
		// of a response would wait for the next call on the connection).
		if wholeResponse(append(b[:len(b):len(b)], 'x')) {
			t.Fatalf("%q and a byte more both taken as whole", b)
		}
		if wholeResponse(b[:len(b)-1]) {
			t.Fatalf("%q and a byte less both taken as whole", b)
		}
	})
}
