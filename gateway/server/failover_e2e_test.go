package server_test

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/server"
	"github.com/valyala/fasthttp"
)

// killableUpstream is a real fasthttp upstream that can die like a process under kill -9: its
// listener and every connection close at once, and the port refuses from then on. It dies
// between requests (a request it has started is answered first), which is the case a gateway
// can recover without repeating work: the connections it holds are dead and the port refuses.
type killableUpstream struct {
	Addr    string
	ln      net.Listener
	mu      sync.RWMutex // handlers hold it shared; kill takes it exclusively
	connsMu sync.Mutex
	conns   []net.Conn
	served  atomic.Int64
	once    sync.Once
}

type trackingListener struct {
	net.Listener
	u *killableUpstream
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.u.connsMu.Lock()
		l.u.conns = append(l.u.conns, c)
		l.u.connsMu.Unlock()
	}
	return c, err
}

func startKillableUpstream(t *testing.T) *killableUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &killableUpstream{Addr: ln.Addr().String(), ln: ln}
	srv := &fasthttp.Server{Logger: quietLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		u.mu.RLock()
		defer u.mu.RUnlock()
		u.served.Add(1)
		ctx.WriteString("victim")
	}}
	go func() { _ = srv.Serve(trackingListener{ln, u}) }()
	t.Cleanup(u.kill)
	return u
}

// kill closes the listener and every connection, without a goodbye.
func (u *killableUpstream) kill() { u.once.Do(u.die) }

func (u *killableUpstream) die() {
	u.mu.Lock() // never unlocked: a handler that starts after this waits on a closed connection
	_ = u.ln.Close()
	u.connsMu.Lock()
	for _, c := range u.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as the kernel sends for a killed process's sockets
		}
		_ = c.Close()
	}
	u.conns = nil
	u.connsMu.Unlock()
}

// TestKilledTargetLosesNoRequest: with the default retries: 0, a target dies while the gateway
// holds warm connections to it. Every later request (its pooled connections are reset, its port
// refuses) goes to the other target, GET and POST alike: not one 502. The clients stop while it
// dies, so that no request is on its way to it at that instant: one that is may have been
// received, and a POST of that kind is never repeated (TestRetriesNeverRepeatAPost...).
func TestKilledTargetLosesNoRequest(t *testing.T) {
	victim := startKillableUpstream(t)
	good := startUpstream(t, "good", nil)
	gw := startGateway(t, retryConfig("round_robin", []string{victim.Addr, good.Addr}, 0, ""))

	const clients, perPhase = 4, 60
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	run := func() {
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perPhase {
					method := http.MethodGet
					if i%2 == 1 {
						method = http.MethodPost
					}
					req, _ := http.NewRequest(method, gw.URL+"/x", strings.NewReader("body"))
					resp, err := client.Do(req)
					sent.Add(1)
					if err != nil {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, err.Error())
						continue
					}
					_ = resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, method+" "+resp.Status)
					}
				}
			}()
		}
		wg.Wait()
	}
	run()
	if victim.served.Load() == 0 {
		t.Fatal("the victim served nothing before it died; the test proves nothing")
	}
	victim.kill()
	run()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed after a target died (first: %v); want 0 while another target is healthy",
			n, sent.Load(), firstFailure.Load())
	}
}

// keepAliveUpstream is a net/http server whose keep-alive timeout is short (as Node.js's 5 s is
// short next to idle_conn_timeout 30 s); it reports each connection it closes. Requests to
// /pair wait for each other, so two of them hold two connections.
type keepAliveUpstream struct {
	Addr   string
	closed chan struct{}
	pair   sync.WaitGroup
}

func startKeepAliveUpstream(t *testing.T, idle time.Duration) *keepAliveUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &keepAliveUpstream{Addr: ln.Addr().String(), closed: make(chan struct{}, 64)}
	u.pair.Add(2)
	srv := &http.Server{
		IdleTimeout: idle,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/pair" {
				u.pair.Done()
				u.pair.Wait()
			}
			_, _ = w.Write([]byte("ok"))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				u.closed <- struct{}{}
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return u
}

// opaqueConn hides the socket, as TLS does: the gateway cannot ask the kernel whether an idle
// connection was closed, so only the transparent repeat saves the request.
type opaqueConn struct{ net.Conn }

// TestUpstreamKeepAliveShorterThanOursCostsNoRequest: the upstream closes idle connections after
// a short keep-alive; after the pause, requests get 200, never "502 stale: EOF". Over plain TCP
// checkout finds the closed connections; where it cannot look, the repeat of a request that met
// a stale connection dials a new one instead of taking the next dead one from the pool.
func TestUpstreamKeepAliveShorterThanOursCostsNoRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		dial func(addr string, timeout time.Duration) (net.Conn, error)
	}{
		{"kernel knows", nil},
		{"opaque connection", func(addr string, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err != nil {
				return nil, err
			}
			return opaqueConn{c}, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startKeepAliveUpstream(t, 20*time.Millisecond)
			gw := startGateway(t, retryConfig("round_robin", []string{up.Addr}, 0, "    idle_conn_timeout: 30s"),
				func(o *server.Options) { o.Dial = tc.dial })
			// Two pooled connections, both to be closed by the upstream.
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r, err := tryGet(gw.URL + "/pair"); err != nil || r.Status != 200 {
						t.Errorf("warm-up: %v %d", err, r.Status)
					}
				}()
			}
			wg.Wait()
			for range 2 {
				select {
				case <-up.closed:
				case <-time.After(10 * time.Second):
					t.Fatal("the upstream never closed its idle connections")
				}
			}
			for i := range 5 {
				if r := get(t, gw.URL+"/after-pause"); r.Status != 200 {
					t.Fatalf("request %d after the upstream closed its idle connections: %d %q", i, r.Status, r.Body)
				}
			}
		})
	}
}
