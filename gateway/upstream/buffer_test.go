package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func getBuffered(t *testing.T, tg *Target, path string, b *Buffering) (*fasthttp.Response, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(path)
	req.Header.SetHost("backend")
	resp := &fasthttp.Response{}
	x := newRoundTrip(5 * time.Second)
	x.buffering = b
	err := tg.Do(req, resp, x)
	return resp, err
}

// TestBufferingFreesTheConnectionBeforeTheClientReads: what is buffered, where, and when the
// connection goes back, for each framing and bound.
func TestBufferingFreesTheConnectionBeforeTheClientReads(t *testing.T) {
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i % 253)
	}
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/fixed":
			ctx.SetBody(big)
		case "/chunked":
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				for off := 0; off < len(big); off += 100 << 10 {
					_, _ = w.Write(big[off:min(off+100<<10, len(big))])
					_ = w.Flush()
				}
			})
		case "/events":
			ctx.SetContentType("text/event-stream; charset=utf-8")
			ctx.SetBody(big)
		}
	})
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		path      string
		buffering *Buffering
		cl        int
		buffered  bool // read whole before Do returned, connection back in the pool
		spilled   bool // needed the temporary file
	}{
		{"in memory", "/fixed", &Buffering{Memory: 4 << 20, MaxTempFile: 1 << 30, TempDir: dir}, len(big), true, false},
		{"memory then file", "/fixed", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 30, TempDir: dir}, len(big), true, true},
		{"chunked, memory then file", "/chunked", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 30, TempDir: dir}, -1, true, true},
		{"declared over the bound streams", "/fixed", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 20, TempDir: dir}, len(big), false, false},
		{"chunked over the bound: buffer, then the rest", "/chunked", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 20, TempDir: dir}, -1, false, true},
		{"no temporary file: the rest streams", "/chunked", &Buffering{Memory: 128 << 10, TempDir: dir}, -1, false, false},
		{"server-sent events stream", "/events", &Buffering{Memory: 4 << 20, MaxTempFile: 1 << 30, TempDir: dir}, len(big), false, false},
		{"off", "/fixed", nil, len(big), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget("app", b.addr, 1, testSettings())
			resp, err := getBuffered(t, tg, tc.path, tc.buffering)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.ContentLength(); got != tc.cl {
				t.Errorf("content length %d, want %d (the upstream's framing)", got, tc.cl)
			}
			st := tg.Stats()
			wantInFlight := int64(1)
			if tc.buffered {
				wantInFlight = 0
			}
			if st.InFlight != wantInFlight || (st.Buffered == 1) != tc.buffered || (st.Spilled == 1) != tc.spilled {
				t.Fatalf("before the client read: in flight %d, buffered %d, spilled %d; want %d, %v, %v",
					st.InFlight, st.Buffered, st.Spilled, wantInFlight, tc.buffered, tc.spilled)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("temp_dir holds %d names; the file must be unlinked at once", len(entries))
			}
			got, err := io.ReadAll(resp.BodyStream())
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("read %d bytes (err %v), want the upstream's %d exactly", len(got), err, len(big))
			}
			if err := resp.CloseBodyStream(); err != nil {
				t.Fatal(err)
			}
			if st := tg.Stats(); st.InFlight != 0 || st.OpenConns != 1 {
				t.Fatalf("after the body: in flight %d, open %d; want 0 and the connection kept", st.InFlight, st.OpenConns)
			}
		})
	}
}

// TestBufferingAnUpstreamThatBreaksIsAFailure: a body cut short while buffering is the
// upstream's failure (502), not a truncated 200, and its connection is not reused.
func TestBufferingAnUpstreamThatBreaksIsAFailure(t *testing.T) {
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
			_, _ = c.Write(make([]byte, 300<<10))
		})
	})
	tg := newTarget("app", b.addr, 1, testSettings())
	_, err := getBuffered(t, tg, "/", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 30, TempDir: t.TempDir()})
	if kindOf(err) != KindRead {
		t.Fatalf("err %v (kind %v), want a read failure", err, kindOf(err))
	}
	if st := tg.Stats(); st.InFlight != 0 || st.OpenConns != 0 || st.Failures != 1 {
		t.Fatalf("in flight %d, open %d, failures %d; want 0, 0, 1", st.InFlight, st.OpenConns, st.Failures)
	}
}

// TestDetachTakesTheBuffer: the response cache detaches a buffered body as it does a stream.
func TestDetachTakesTheBuffer(t *testing.T) {
	body := bytes.Repeat([]byte("abc"), 100<<10)
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	tg := newTarget("app", b.addr, 1, testSettings())
	resp, err := getBuffered(t, tg, "/", &Buffering{Memory: 64 << 10, MaxTempFile: 1 << 30, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rest := Detach(resp.BodyStream())
	if rest == nil {
		t.Fatal("Detach refused a buffered body")
	}
	if err := resp.CloseBodyStream(); err != nil { // the original is empty now: a no-op
		t.Fatal(err)
	}
	got, err := io.ReadAll(rest)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes (err %v), want %d", len(got), err, len(body))
	}
	_ = rest.Close()
	if Detach(resp.BodyStream()) != nil {
		t.Fatal("a detached buffer was detached twice")
	}
}
