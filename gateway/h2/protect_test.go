package h2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient is an HTTP/2 client written with x/net/http2's Framer, free to break the rules.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// settings is the server's first SETTINGS frame.
	settings map[http2.SettingID]uint32
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Bounds a test that would otherwise hang if the server misbehaved; never a synchronisation.
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &rawClient{t: t, conn: conn, fr: http2.NewFramer(conn, conn), settings: map[http2.SettingID]uint32{}}
	c.enc = hpack.NewEncoder(&c.hbuf)
	if _, err := io.WriteString(conn, Preface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := c.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
	if err := c.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return c
}

// headerBlock encodes a GET of path plus extra fields.
func (c *rawClient) headerBlock(path string, extra ...string) []byte {
	c.hbuf.Reset()
	fields := append([]string{":method", "GET", ":scheme", "http", ":authority", "test", ":path", path}, extra...)
	for i := 0; i < len(fields); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), c.hbuf.Bytes()...)
}

func (c *rawClient) open(id uint32, path string, endStream bool) {
	c.t.Helper()
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock(path), EndStream: endStream, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// readUntil reads frames until match returns true, or the connection ends (nil, err).
func (c *rawClient) readUntil(match func(http2.Frame) bool) (http2.Frame, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if match(f) {
			return f, nil
		}
	}
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

// blockingHandler serves /block by waiting for release (or the test's end), anything else at once.
func blockingHandler(t *testing.T, started *atomic.Int64) (fasthttp.RequestHandler, chan struct{}) {
	h, release, _ := blockingHandlerSignalling(t, started)
	return h, release
}

func blockingHandlerSignalling(t *testing.T, started *atomic.Int64) (fasthttp.RequestHandler, chan struct{}, chan struct{}) {
	release := make(chan struct{})
	first := make(chan struct{}, 1)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return func(ctx *fasthttp.RequestCtx) {
		if strings.HasPrefix(string(ctx.Path()), "/block") {
			started.Add(1)
			select {
			case first <- struct{}{}:
			default:
			}
			<-release
		}
		ctx.SetBodyString("done")
	}, release, first
}

// TestRapidResetClosesTheConnection sends the CVE-2023-44487 pattern: streams opened and reset
// at once, faster than their handlers finish. The server stops the connection with GOAWAY
// (ENHANCE_YOUR_CALM) instead of running an unbounded number of handlers, and keeps serving
// other clients.
func TestRapidResetClosesTheConnection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		var started atomic.Int64
		handler, release := blockingHandler(t, &started)
		addr, srv := serveH2CWith(t, s, handler)
		c := dialRaw(t, addr)
		maxStreams := c.settings[http2.SettingMaxConcurrentStreams]
		if maxStreams != s.MaxConcurrentStreams {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d", maxStreams)
		}
		attacked := make(chan struct{})
		defer func() { c.conn.Close(); <-attacked }()
		go func() { // the attacker writes while the server answers
			defer close(attacked)
			for i := uint32(0); i < 10*maxStreams; i++ {
				id := 2*i + 1
				err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock("/block"), EndStream: true, EndHeaders: true})
				if err == nil {
					err = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				}
				if err != nil {
					return // the server closed the connection
				}
			}
		}()
		f, err := c.readUntil(isGoAway)
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
		}
		if _, err := c.readUntil(func(http2.Frame) bool { return false }); err == nil {
			t.Fatal("connection still open")
		}
		if n := started.Load(); n > int64(maxStreams) {
			t.Errorf("%d handlers ran for one connection, at most %d may", n, maxStreams)
		}
		close(release)
		// The server survived: a new client is served.
		c2 := &http.Client{Transport: h2cTransport(t)}
		resp, err := c2.Get("http://" + addr + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after the attack: %d", resp.StatusCode)
		}
		_ = srv
	})
}

// TestContinuationFloodClosesTheConnection sends the CVE-2024-27316 pattern: a HEADERS frame
// without END_HEADERS followed by CONTINUATION frames that never end. The server stops reading
// once the header list exceeds its limit and closes the connection; it never buffers the flood.
func TestContinuationFloodClosesTheConnection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
		c := dialRaw(t, addr)
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.headerBlock("/"), EndHeaders: false}); err != nil {
			t.Fatal(err)
		}
		var sent atomic.Int64
		go func() {
			for i := 0; ; i++ {
				c.hbuf.Reset()
				_ = c.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-flood-%d", i), Value: strings.Repeat("v", 4000)})
				if err := c.fr.WriteContinuation(1, false, c.hbuf.Bytes()); err != nil {
					return
				}
				sent.Add(int64(c.hbuf.Len()))
				if sent.Load() > 64<<20 {
					return
				}
			}
		}()
		f, err := c.readUntil(isGoAway)
		if err == nil {
			code := f.(*http2.GoAwayFrame).ErrCode
			if code == http2.ErrCodeNo {
				t.Fatalf("GOAWAY %v", code)
			}
			_, err = c.readUntil(func(http2.Frame) bool { return false })
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection not closed: %v", err)
		}
		if n := sent.Load(); n > 8<<20 {
			t.Errorf("the server read %d bytes of CONTINUATION before closing", n)
		}
		resp, err := (&http.Client{Transport: h2cTransport(t)}).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
}

// TestMaxConcurrentStreamsRefusesTheNext opens one stream more than the server allows.
func TestMaxConcurrentStreamsRefusesTheNext(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		var started atomic.Int64
		handler, _ := blockingHandler(t, &started)
		addr, srv := serveH2CWith(t, s, handler)
		c := dialRaw(t, addr)
		n := c.settings[http2.SettingMaxConcurrentStreams]
		for i := uint32(0); i <= n; i++ {
			c.open(2*i+1, "/block", true)
		}
		f, err := c.readUntil(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if err != nil {
			t.Fatal(err)
		}
		rst := f.(*http2.RSTStreamFrame)
		if rst.StreamID != 2*n+1 || (rst.ErrCode != http2.ErrCodeRefusedStream && rst.ErrCode != http2.ErrCodeProtocol) {
			t.Fatalf("RST_STREAM on %d with %v, want stream %d refused", rst.StreamID, rst.ErrCode, 2*n+1)
		}
		// Counted before the RST_STREAM was written.
		if got := srv.Streams(StreamRefused); got != 1 {
			t.Fatalf("%d streams counted refused, want 1", got)
		}
	})
}

// TestStreamOutcomesAreCounted: a stream answered is counted completed (before its response
// leaves); one the client resets while its handler runs is counted reset.
func TestStreamOutcomesAreCounted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		var started atomic.Int64
		handler, release, first := blockingHandlerSignalling(t, &started)
		addr, srv := serveH2CWith(t, s, handler)
		c := dialRaw(t, addr)
		c.open(1, "/now", true)
		if _, err := c.readUntil(func(f http2.Frame) bool {
			return f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream)
		}); err != nil {
			t.Fatal(err)
		}
		if got := srv.Streams(StreamCompleted); got != 1 {
			t.Fatalf("%d streams completed, want 1", got)
		}

		c.open(3, "/block", true)
		<-first
		if err := c.fr.WriteRSTStream(3, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		// The connection's loop handles frames in order: once the PING is answered, the reset
		// has cancelled the stream.
		if err := c.fr.WritePing(false, [8]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.readUntil(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }); err != nil {
			t.Fatal(err)
		}
		close(release)
		// The handler returns on its own goroutine; the bound only ends a test that would hang.
		for deadline := time.Now().Add(30 * time.Second); srv.Streams(StreamReset) == 0; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatalf("the reset stream was not counted reset (completed %d)", srv.Streams(StreamCompleted))
			}
		}
		if got := [3]uint64{srv.Streams(StreamCompleted), srv.Streams(StreamReset), srv.Streams(StreamRefused)}; got != [3]uint64{1, 1, 0} {
			t.Fatalf("completed, reset, refused: %v, want [1 1 0]", got)
		}
	})
}

// TestIdleConnectionIsClosed: a connection without streams is closed after idle_timeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		addr, srv := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {})
		s.IdleTimeout = 100 * time.Millisecond
		srv.Store(s)
		c := dialRaw(t, addr)
		f, err := c.readUntil(isGoAway)
		if err != nil {
			t.Fatal(err)
		}
		if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeNo {
			t.Fatalf("GOAWAY %v", code)
		}
	})
}

// TestGracefulGoAway: on shutdown, and when a reload changes the settings, a connection gets
// GOAWAY(NO_ERROR) while a stream is in flight; the stream still completes, and then the
// connection closes.
func TestGracefulGoAway(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		for _, how := range []string{"reload", "shutdown"} {
			t.Run(how, func(t *testing.T) {
				var started atomic.Int64
				handler, release, first := blockingHandlerSignalling(t, &started)
				addr, srv := serveH2CWith(t, s, handler)
				c := dialRaw(t, addr)
				c.open(1, "/block", true)
				<-first
				shutdown := make(chan error, 1)
				switch how {
				case "reload":
					s := s
					s.MaxConcurrentStreams = 7
					srv.Store(s)
				case "shutdown":
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						shutdown <- srv.Shutdown(ctx)
					}()
				}
				f, err := c.readUntil(isGoAway)
				if err != nil {
					t.Fatal(err)
				}
				if g := f.(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeNo || g.LastStreamID < 1 {
					t.Fatalf("GOAWAY %v last stream %d", g.ErrCode, g.LastStreamID)
				}
				close(release)
				var body []byte
				_, err = c.readUntil(func(f http2.Frame) bool {
					if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
						body = append(body, d.Data()...)
						return d.StreamEnded()
					}
					return false
				})
				if err != nil || string(body) != "done" {
					t.Fatalf("in-flight stream: %q, %v", body, err)
				}
				if _, err := c.readUntil(func(http2.Frame) bool { return false }); err == nil {
					t.Fatal("connection still open")
				}
				if how == "shutdown" {
					if err := <-shutdown; err != nil {
						t.Fatalf("shutdown: %v", err)
					}
					return
				}
				if c2 := dialRaw(t, addr); c2.settings[http2.SettingMaxConcurrentStreams] != 7 {
					t.Fatalf("new connection after reload: SETTINGS_MAX_CONCURRENT_STREAMS %d", c2.settings[http2.SettingMaxConcurrentStreams])
				}
			})
		}
	})
}

// TestRequestBodyReadTimeout: a stream whose body stops arriving fails its read after
// read_timeout (the gateway answers 408), while a GET on the same connection, whole with its
// HEADERS, is served as usual: the timer is armed for bodies only.
func TestRequestBodyReadTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		s.ReadTimeout = 200 * time.Millisecond
		readErr := make(chan error, 1)
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
			if ctx.IsGet() {
				ctx.SetBodyString("ok")
				return
			}
			_, err := io.ReadAll(ctx.RequestBodyStream())
			readErr <- err
			ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
		})
		c := dialRaw(t, addr)
		c.hbuf.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "test"}, {":path", "/upload"}} {
			_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.fr.WriteData(1, false, []byte("the first part of a body that never ends")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-readErr:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("reading the stalled body: %v, want a deadline error", err)
			}
		case <-time.After(30 * time.Second): // a bound on a hang, far above the timeout
			t.Fatal("reading a stalled body never failed")
		}
		c.open(3, "/get", true)
		dec := hpack.NewDecoder(4096, nil) // every HEADERS frame, in order: they share its table
		status := ""
		_, err := c.readUntil(func(f http2.Frame) bool {
			h, ok := f.(*http2.HeadersFrame)
			if !ok {
				return false
			}
			fields, err := dec.DecodeFull(h.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			if h.StreamID != 3 {
				return false
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					status = hf.Value
				}
			}
			return true
		})
		if err != nil || status != "200" {
			t.Fatalf("the GET after the timeout: status %q, %v", status, err)
		}
	})
}
