// Package loadgen holds the load the benchmark makes besides wrk: an open-loop generator that
// sends at a fixed rate and measures latency from when each request was due (so a stalled
// server cannot hide its tail by slowing the sender: no coordinated omission), a holder of idle
// keep-alive connections, and a WebSocket echo client.
package loadgen

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Result of an open-loop or WebSocket run. Latencies are in microseconds.
type Result struct {
	Sent, Completed, Errors int64
	Elapsed                 time.Duration
	Hist                    *hdrhistogram.Histogram
}

// Percentile returns a latency percentile in milliseconds.
func (r *Result) Percentile(p float64) float64 {
	return float64(r.Hist.ValueAtQuantile(p)) / 1000
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// OpenLoop sends GET path to addr at rate requests per second for d over conns keep-alive
// connections. Request i is due at start + i/rate; its latency is measured from then, so time
// spent waiting for a free connection counts. Requests still unanswered 5 s after d are errors.
func OpenLoop(addr, path string, rate float64, d time.Duration, conns int) (*Result, error) {
	total := int64(rate * d.Seconds())
	if total <= 0 || conns <= 0 {
		return nil, errors.New("openloop: rate, duration and connections must be positive")
	}
	raw := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: archway-bench\r\n\r\n")
	due := make(chan int64, total)
	start := time.Now()
	stopAt := start.Add(d + 5*time.Second)
	var sent, completed, failed atomic.Int64

	go func() { // the schedule: never waits for the workers
		defer close(due)
		interval := float64(time.Second) / rate
		for i := int64(0); i < total; {
			now := int64(time.Since(start))
			for ; i < total && float64(i)*interval <= float64(now); i++ {
				due <- i
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()

	hists := make([]*hdrhistogram.Histogram, conns)
	var wg sync.WaitGroup
	for w := range conns {
		hists[w] = newHist()
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hists[w]
			var c net.Conn
			var br *bufio.Reader
			var resp fasthttp.Response
			interval := float64(time.Second) / rate
			for i := range due {
				intended := start.Add(time.Duration(float64(i) * interval))
				if time.Now().After(stopAt) {
					failed.Add(1)
					continue
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
						c = nil
						failed.Add(1)
						continue
					}
					br = bufio.NewReaderSize(c, 16<<10)
				}
				sent.Add(1)
				_ = c.SetDeadline(stopAt)
				_, err := c.Write(raw)
				if err == nil {
					err = resp.Read(br)
				}
				if err != nil || resp.StatusCode() >= 400 {
					failed.Add(1)
					if err != nil {
						c.Close()
						c = nil
					}
					continue
				}
				_ = h.RecordValue(max(1, time.Since(intended).Microseconds()))
				completed.Add(1)
				if resp.ConnectionClose() {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	res := &Result{Sent: sent.Load(), Completed: completed.Load(), Errors: failed.Load(), Elapsed: time.Since(start), Hist: newHist()}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	return res, nil
}

// IdleOptions say how Idle opens its connections.
type IdleOptions struct {
	// TLS, when set, makes every connection a TLS connection (a full handshake each).
	TLS *tls.Config
	// WebSocket upgrades every connection (GET path with the upgrade headers, 101 expected)
	// instead of making one plain request on it, and exchanges one message with the echo
	// upstream, so every tunnel has carried data both ways before it idles.
	WebSocket bool
}

// Idle opens n connections to addr, sends one GET path on each and reads the answer, so the
// proxy has served a request on every one (or, with o.WebSocket, upgraded it and opened the
// tunnel to the upstream), then leaves them open and idle. Close them with the returned
// function.
func Idle(addr, path string, n, parallel int, o IdleOptions) (closeAll func(), err error) {
	raw := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	if o.WebSocket {
		raw = []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	}
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp fasthttp.Response
			br := bufio.NewReaderSize(nil, 4096)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil && o.TLS != nil {
					tc := tls.Client(c, o.TLS)
					_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
					if err = tc.Handshake(); err != nil {
						c.Close()
					}
					c = tc
				}
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write(raw); err == nil {
						br.Reset(c)
						if o.WebSocket {
							if err = readSwitchingProtocols(br); err == nil {
								err = echoOnce(c, br)
							}
						} else {
							err = resp.Read(br)
						}
					}
					_ = c.SetDeadline(time.Time{})
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("idle connection %d: %w", i, err)
					}
					mu.Unlock()
					if c != nil {
						c.Close()
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	closeAll = func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	if firstErr != nil {
		closeAll()
		return nil, firstErr
	}
	return closeAll, nil
}

// idleMessage is the one masked binary frame (payload "idle websocket!!") an idle WebSocket
// sends, and the unmasked echo it expects.
var (
	idleMessage = append([]byte{0x82, 0x90, 0, 0, 0, 0}, "idle websocket!!"...) // mask key 0
	idleEcho    = append([]byte{0x82, 0x10}, "idle websocket!!"...)
)

// echoOnce sends idleMessage and reads its echo.
func echoOnce(c net.Conn, br *bufio.Reader) error {
	if _, err := c.Write(idleMessage); err != nil {
		return err
	}
	got := make([]byte, len(idleEcho))
	if _, err := io.ReadFull(br, got); err != nil {
		return err
	}
	if !bytes.Equal(got, idleEcho) {
		return fmt.Errorf("websocket echo %x, want %x", got, idleEcho)
	}
	return nil
}

// readSwitchingProtocols reads a response head and wants 101.
func readSwitchingProtocols(br *bufio.Reader) error {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("websocket upgrade answered %s", resp.Status)
	}
	return nil
}

// HandshakeResult is a run of Handshakes.
type HandshakeResult struct {
	Result
	Resumed int64 // handshakes that resumed a session
}

// Handshakes opens a new TLS connection to addr for every request, conns at a time, for d:
// each connection does one handshake, one GET path with Connection: close, and is closed.
// With resume, the workers share a client session cache, so every handshake after a
// worker's first can resume (TLS 1.3 tickets, or 1.2 tickets); without it, every handshake is
// full. The certificate is not verified: the benchmark measures the server's handshake work,
// and skipping the client's chain check keeps the load generator from being the bottleneck.
func Handshakes(addr, path string, conns int, d time.Duration, resume bool) (*HandshakeResult, error) {
	if conns <= 0 || d <= 0 {
		return nil, errors.New("handshake: connections and duration must be positive")
	}
	raw := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}} //nolint:gosec // see above
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(conns * 4)
	}
	var completed, failed, resumed atomic.Int64
	hists := make([]*hdrhistogram.Histogram, conns)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := range conns {
		hists[w] = newHist()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp fasthttp.Response
			br := bufio.NewReaderSize(nil, 4096)
			for time.Now().Before(end) {
				t := time.Now()
				did, err := oneTLSRequest(addr, cfg, raw, br, &resp)
				if err != nil || resp.StatusCode() >= 400 {
					failed.Add(1)
					if err != nil {
						time.Sleep(time.Millisecond) // a refused dial returns at once: do not spin
					}
					continue
				}
				if did {
					resumed.Add(1)
				}
				_ = hists[w].RecordValue(max(1, time.Since(t).Microseconds()))
				completed.Add(1)
			}
		}()
	}
	wg.Wait()
	res := &HandshakeResult{Result: Result{Sent: completed.Load() + failed.Load(), Completed: completed.Load(), Errors: failed.Load(),
		Elapsed: time.Since(start), Hist: newHist()}, Resumed: resumed.Load()}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	return res, nil
}

func oneTLSRequest(addr string, cfg *tls.Config, raw []byte, br *bufio.Reader, resp *fasthttp.Response) (resumed bool, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	tc := tls.Client(c, cfg)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write(raw); err != nil { // the handshake runs on the first write
		return false, err
	}
	br.Reset(tc)
	if err := resp.Read(br); err != nil {
		return false, err
	}
	return tc.ConnectionState().DidResume, nil
}

// WSEcho opens conns WebSocket connections to url and on each sends a message of size bytes,
// waits for its echo and sends the next, for d. Completed counts echoed messages.
func WSEcho(url string, conns, size int, d time.Duration) (*Result, error) {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = 'a' + byte(i%26)
	}
	cs := make([]*websocket.Conn, conns)
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}
	for i := range cs {
		c, _, err := dialer.Dial(url, nil)
		if err != nil {
			for _, o := range cs[:i] {
				o.Close()
			}
			return nil, fmt.Errorf("websocket dial: %w", err)
		}
		cs[i] = c
	}
	var completed, failed atomic.Int64
	hists := make([]*hdrhistogram.Histogram, conns)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range cs {
		hists[i] = newHist()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(end.Add(5 * time.Second))
			for time.Now().Before(end) {
				t := time.Now()
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					failed.Add(1)
					return
				}
				_, got, err := c.ReadMessage()
				if err != nil || len(got) != size {
					failed.Add(1)
					return
				}
				_ = hists[i].RecordValue(max(1, time.Since(t).Microseconds()))
				completed.Add(1)
			}
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}()
	}
	wg.Wait()
	res := &Result{Sent: completed.Load() + failed.Load(), Completed: completed.Load(), Errors: failed.Load(), Elapsed: time.Since(start), Hist: newHist()}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	return res, nil
}
