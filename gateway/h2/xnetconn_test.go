package h2

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// countingListener counts the reads and writes made to the connections it accepts.
type countingListener struct {
	net.Listener
	reads, writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.reads, l.writes}, nil
}

type countingConn struct {
	net.Conn
	reads, writes *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// serveCounted serves srv's HTTP/2 (prior knowledge, no TLS) on a loopback listener whose
// connections count their reads and writes.
func serveCounted(t *testing.T, srv *Server) (url string, reads, writes *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reads, writes = new(atomic.Int64), new(atomic.Int64)
	counted := countingListener{ln, reads, writes}
	go func() {
		for {
			c, err := counted.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String() + "/", reads, writes
}

// TestResponsesReadyTogetherLeaveInFewWrites: when many streams of one connection have their
// responses ready at once (as when one network poll wakes the handlers whose upstreams answered),
// the connection sends them in a few writes, not one or more per response. One P, as the
// gateway pinned to a core runs.
func TestResponsesReadyTogetherLeaveInFewWrites(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	forEachEngine(t, func(t *testing.T, s Settings) {
		const streams = 99 // and the warm-up: s.MaxConcurrentStreams, all on one connection
		var arrived sync.WaitGroup
		release := make(chan struct{})
		body := []byte(`{"ok":true}`)
		handler := func(ctx *fasthttp.RequestCtx) {
			arrived.Done()
			<-release
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		}
		srv := NewServer(s, Handler{Serve: handler, Logger: quiet{}})
		url, _, writes := serveCounted(t, srv)
		client := &http.Client{Transport: h2cTransport(t)}
		// One stream first, so the connection exists and the others share it.
		arrived.Add(1)
		warm := make(chan error, 1)
		go func() {
			resp, err := client.Get(url)
			if err == nil {
				resp.Body.Close()
			}
			warm <- err
		}()
		arrived.Wait() // the warm-up stream is in its handler: the connection is open
		arrived.Add(streams)
		errs := make(chan error, streams)
		var done sync.WaitGroup
		for range streams {
			done.Add(1)
			go func() {
				defer done.Done()
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.ProtoMajor != 2 {
						err = fmt.Errorf("served over %s", resp.Proto)
					}
				}
				errs <- err
			}()
		}
		arrived.Wait()
		before := writes.Load()
		close(release)
		done.Wait()
		if err := <-warm; err != nil {
			t.Fatal(err)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := writes.Load() - before
		t.Logf("%d responses in %d writes, %d connections", streams+1, got, srv.Accepted())
		if srv.Accepted() != 1 {
			t.Fatalf("the streams came over %d connections, want one", srv.Accepted())
		}
		if got > streams/5 {
			t.Errorf("%d responses ready together took %d writes to the connection, want at most %d", streams+1, got, streams/5)
		}
	})
}

// TestYieldingKeepsWhatXNetChecks: x/net/http2 checks the TLS version and cipher suite through
// the connection it is given; the wrapper keeps that for a TLS connection and does not make a
// plain one look like TLS.
func TestYieldingKeepsWhatXNetChecks(t *testing.T) {
	type stater interface{ ConnectionState() tls.ConnectionState }
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	if _, ok := forXNet(server).(stater); ok {
		t.Error("a plain connection wrapped offers a TLS state")
	}
	tc := tls.Server(server, &tls.Config{})
	w, ok := forXNet(tc).(stater)
	if !ok {
		t.Fatal("a TLS connection wrapped hides its TLS state")
	}
	if got, want := w.ConnectionState(), tc.ConnectionState(); got.HandshakeComplete != want.HandshakeComplete || got.Version != want.Version {
		t.Errorf("wrapped TLS state %+v, want %+v", got, want)
	}
}

// TestH2CFramesAreReadInFewCalls: without TLS, x/net/http2 would read each frame's header and
// its payload with a system call each; through the buffer a request that arrives in one
// segment is read with one. The native engine reads through a buffer of its own.
func TestH2CFramesAreReadInFewCalls(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		srv := NewServer(s, Handler{Serve: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, Logger: quiet{}})
		url, reads, _ := serveCounted(t, srv)
		client := &http.Client{Transport: h2cTransport(t)}
		get := func() {
			resp, err := client.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("served over %s", resp.Proto)
			}
		}
		get() // the connection, its preface and SETTINGS
		const requests = 200
		before := reads.Load()
		for range requests {
			get()
		}
		got := reads.Load() - before
		t.Logf("%d requests one after another in %d reads", requests, got)
		// One read per request and the odd WINDOW_UPDATE or PING; without the buffer it is two or more.
		if got > requests*5/4 {
			t.Errorf("%d requests took %d reads of the connection, want at most %d", requests, got, requests*5/4)
		}
	})
}
