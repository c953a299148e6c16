package upstream

import (
	"bufio"
	"bytes"
	"fmt"
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

// settled waits until the filler of resp's buffered body, if it has one, is done with the
// upstream stream: the body is buffered whole, or the bound is reached, or the upstream broke.
func settled(t *testing.T, resp *fasthttp.Response) {
	t.Helper()
	sb, ok := resp.BodyStream().(*spooledBody)
	if !ok {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for sb.sp.state.Load() == spFilling {
		if time.Now().After(deadline) {
			t.Fatal("the filler is still reading after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
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
			settled(t, resp)
			wantInFlight := int64(1)
			if tc.buffered {
				wantInFlight = 0
			}
			// The filler marks the spool done, then gives the connection back: wait for that
			// too (the client still reads nothing), or the check races the filler's last step.
			st := tg.Stats()
			for deadline := time.Now().Add(10 * time.Second); st.InFlight != wantInFlight && time.Now().Before(deadline); st = tg.Stats() {
				time.Sleep(time.Millisecond)
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

// TestBufferingAnUpstreamThatBreaksIsAFailure: a body cut short while buffering counts as the
// upstream's failure, its connection is not reused, and the client's read of the body fails
// where the upstream broke: the response is cut short, never ended as if complete.
func TestBufferingAnUpstreamThatBreaksIsAFailure(t *testing.T) {
	sent := make([]byte, 300<<10)
	for i := range sent {
		sent[i] = byte(i % 249)
	}
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
			_, _ = c.Write(sent)
		})
	})
	tg := newTarget("app", b.addr, 1, testSettings())
	resp, err := getBuffered(t, tg, "/", &Buffering{Memory: 128 << 10, MaxTempFile: 1 << 30, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.BodyStream())
	if kindOf(err) != KindRead || !bytes.Equal(got, sent) {
		t.Fatalf("read %d bytes, err %v (kind %v); want the %d sent, then a read failure", len(got), err, kindOf(err), len(sent))
	}
	_ = resp.CloseBodyStream()
	if st := tg.Stats(); st.InFlight != 0 || st.OpenConns != 0 || st.Failures != 1 || st.Buffered != 0 {
		t.Fatalf("in flight %d, open %d, failures %d, buffered %d; want 0, 0, 1, 0", st.InFlight, st.OpenConns, st.Failures, st.Buffered)
	}
}

// heldUpstream answers every request with a body of len(body) bytes, of which it sends the
// first `first` at once and the rest only when release is closed.
type heldUpstream struct {
	addr    string
	release chan struct{}
}

func startHeldUpstream(t *testing.T, body []byte, first int) *heldUpstream {
	t.Helper()
	h := &heldUpstream{release: make(chan struct{})}
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
			_, _ = c.Write(body[:first])
			select {
			case <-h.release:
				_, _ = c.Write(body[first:])
				_, _ = io.Copy(io.Discard, c) // keep the connection until the gateway's side ends it
			case <-ctx.Done():
			}
		})
	})
	h.addr = b.addr
	return h
}

// TestBufferingSendsWhileItBuffers: the client gets the first bytes of a body the upstream is
// still producing (the upstream holds the rest until the client has them), and the rest when
// the upstream sends it. With the client stalled, the connection then goes back to the pool.
func TestBufferingSendsWhileItBuffers(t *testing.T) {
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i % 241)
	}
	const first = 1 << 20 // past memory: the client's first bytes come from memory and the file
	up := startHeldUpstream(t, body, first)
	tg := newTarget("app", up.addr, 1, testSettings())
	x := newRoundTrip(20 * time.Second)
	x.buffering = &Buffering{Memory: 256 << 10, MaxTempFile: 1 << 30, TempDir: t.TempDir()}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("/slow")
	req.Header.SetHost("backend")
	resp := &fasthttp.Response{}
	if err := tg.Do(req, resp, x); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(body))
	if _, err := io.ReadFull(resp.BodyStream(), got[:first]); err != nil || !bytes.Equal(got[:first], body[:first]) {
		t.Fatalf("the first %d bytes while the upstream holds the rest: %v", first, err)
	}
	if st := tg.Stats(); st.InFlight != 1 || st.Buffered != 0 || st.Spilled != 1 {
		t.Fatalf("while the upstream holds the rest: in flight %d, buffered %d, spilled %d; want 1, 0, 1", st.InFlight, st.Buffered, st.Spilled)
	}
	close(up.release)
	settled(t, resp) // the client reads nothing meanwhile: the body is buffered and the connection back
	if st := tg.Stats(); st.InFlight != 0 || st.Buffered != 1 || st.OpenConns != 1 {
		t.Fatalf("body buffered, client stalled: in flight %d, buffered %d, open %d; want 0, 1, 1", st.InFlight, st.Buffered, st.OpenConns)
	}
	if _, err := io.ReadFull(resp.BodyStream(), got[first:]); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the rest: %v (bodies equal: %v)", err, bytes.Equal(got, body))
	}
	if n, err := resp.BodyStream().Read(got[:1]); n != 0 || err != io.EOF {
		t.Fatalf("after the body: %d, %v; want EOF", n, err)
	}
	_ = resp.CloseBodyStream()
}

// TestBufferingClientGoneStopsTheFiller: a client that goes away while the upstream is still
// producing ends the upstream exchange at once (the connection is closed, not left to the
// upstream's pace and not reused), and nothing of the buffer stays.
func TestBufferingClientGoneStopsTheFiller(t *testing.T) {
	body := make([]byte, 2<<20)
	up := startHeldUpstream(t, body, 512<<10)
	tg := newTarget("app", up.addr, 1, testSettings())
	resp, err := getBuffered(t, tg, "/slow", &Buffering{Memory: 256 << 10, MaxTempFile: 1 << 30, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.BodyStream(), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	_ = resp.CloseBodyStream()
	deadline := time.Now().Add(10 * time.Second)
	for st := tg.Stats(); st.InFlight != 0 || st.OpenConns != 0; st = tg.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the client left: in flight %d, open %d; want 0, 0", st.InFlight, st.OpenConns)
		}
		time.Sleep(time.Millisecond)
	}
	if st := tg.Stats(); st.Failures != 0 || st.Buffered != 0 {
		t.Fatalf("failures %d, buffered %d; the client leaving is not the upstream's failure", st.Failures, st.Buffered)
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
