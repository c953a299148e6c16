package h2

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestResponseKeepsToTheClientsWindows: a client that opens a 1 000-byte window per stream
// and a connection window of 65 535 bytes, and gives back what it has read frame by frame,
// receives a 300 KB body whole, in DATA frames never larger than its windows allowed or its
// SETTINGS_MAX_FRAME_SIZE.
func TestResponseKeepsToTheClientsWindows(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000/16)
	forEachEngine(t, func(t *testing.T, s Settings) {
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(big) })
		c := dialRaw(t, addr)
		if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}); err != nil {
			t.Fatal(err)
		}
		c.open(1, "/big", true)
		streamWin, connWin := int64(1000), int64(65535)
		var got []byte
		_, err := c.readUntil(func(f http2.Frame) bool {
			d, ok := f.(*http2.DataFrame)
			if !ok || d.StreamID != 1 {
				return false
			}
			n := int64(len(d.Data()))
			streamWin -= n
			connWin -= n
			if streamWin < 0 || connWin < 0 {
				t.Fatalf("a DATA frame of %d bytes overran the windows (stream %d, connection %d after it)", n, streamWin, connWin)
			}
			got = append(got, d.Data()...)
			if n > 0 {
				// Give back what was read, as a client reading its body does.
				if err := c.fr.WriteWindowUpdate(1, uint32(n)); err != nil {
					t.Fatal(err)
				}
				if err := c.fr.WriteWindowUpdate(0, uint32(n)); err != nil {
					t.Fatal(err)
				}
				streamWin += n
				connWin += n
			}
			return d.StreamEnded()
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, big) {
			t.Fatalf("received %d bytes, want the %d sent", len(got), len(big))
		}
	})
}

// TestUploadsLargerThanTheWindows: request bodies larger than the stream and connection windows
// arrive whole, on several streams at once: the gateway gives window back as it reads.
func TestUploadsLargerThanTheWindows(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Settings) {
		s.MaxUploadBufferPerStream = 65535
		s.MaxUploadBufferPerConnection = 128 << 10
		addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
			h := sha256.New()
			n, err := io.Copy(h, ctx.RequestBodyStream())
			if err != nil {
				ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
				return
			}
			ctx.SetBodyString(fmt.Sprintf("%d %x", n, h.Sum(nil)))
		})
		client := &http.Client{Transport: h2cTransport(t)}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := bytes.Repeat([]byte{byte('a' + i)}, 700_000+i*1000)
				sum := sha256.Sum256(body)
				want := strconv.Itoa(len(body)) + " " + fmt.Sprintf("%x", sum)
				// Unknown length (a pipe), and declared length: both ways a body arrives.
				var r io.Reader = bytes.NewReader(body)
				if i%2 == 0 {
					r = io.MultiReader(r)
				}
				resp, err := client.Post("http://"+addr+"/upload", "application/octet-stream", r)
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != 2 || string(got) != want {
					t.Errorf("upload %d over %s: %q, want %q", i, resp.Proto, got, want)
				}
			}()
		}
		wg.Wait()
	})
}

// TestPostWithMismatchedLengthIsRefused: a body longer or shorter than its Content-Length is a
// malformed request (RFC 9113, section 8.1.1): the native engine resets the stream with
// PROTOCOL_ERROR (x/net's fails the handler's read of a short body instead).
func TestPostWithMismatchedLengthIsRefused(t *testing.T) {
	s := testSettings
	s.Engine = EngineNative
	addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
		_, _ = io.ReadAll(ctx.RequestBodyStream())
	})
	for i, sent := range []string{"too long for five", "abc"} {
		c := dialRaw(t, addr)
		id := uint32(2*i + 1)
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock("/", "content-length", "5"), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.fr.WriteData(id, true, []byte(sent)); err != nil {
			t.Fatal(err)
		}
		f, err := c.readUntil(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if err != nil {
			t.Fatal(err)
		}
		if rst := f.(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeProtocol {
			t.Fatalf("body %q for a length of 5: RST_STREAM %v, want PROTOCOL_ERROR", sent, rst.ErrCode)
		}
	}
}

// TestNativeWriteTimeoutBoundsTheWaitForWindow: with the native engine, a response that waits
// write_timeout for a client that never opens its window is reset (FLOW_CONTROL_ERROR), while a
// streamed response that lasts longer than write_timeout reaches a client that keeps reading.
func TestNativeWriteTimeoutBoundsTheWaitForWindow(t *testing.T) {
	s := testSettings
	s.Engine = EngineNative
	s.WriteTimeout = 200 * time.Millisecond
	addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			pr, pw := io.Pipe()
			go func() {
				for i := range 6 {
					time.Sleep(100 * time.Millisecond) // 600 ms in all: three write timeouts
					_, _ = fmt.Fprintf(pw, "part %d\n", i)
				}
				pw.Close()
			}()
			ctx.SetBodyStream(pr, -1)
			return
		}
		ctx.SetBody(bytes.Repeat([]byte("x"), 1000))
	})

	c := dialRaw(t, addr)
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.open(1, "/stuck", true)
	f, err := c.readUntil(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
	if err != nil {
		t.Fatal(err)
	}
	if rst := f.(*http2.RSTStreamFrame); rst.ErrCode != http2.ErrCodeFlowControl {
		t.Fatalf("RST_STREAM %v, want FLOW_CONTROL_ERROR", rst.ErrCode)
	}
	if took := time.Since(start); took < s.WriteTimeout {
		t.Fatalf("reset after %v, before write_timeout", took)
	}

	resp, err := (&http.Client{Transport: h2cTransport(t)}).Get("http://" + addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(body), "part 5\n") {
		t.Fatalf("a streamed response longer than write_timeout: %q, %v", body, err)
	}
}

// TestNativeControlFloodClosesTheConnection: a client that makes the gateway owe it more than
// 10 000 control frames while the connection's writer is stuck on the client's full socket
// (it sends PINGs and reads nothing) has its connection closed; the frames owed do not grow
// without bound.
func TestNativeControlFloodClosesTheConnection(t *testing.T) {
	s := testSettings
	s.Engine = EngineNative
	big := bytes.Repeat([]byte("x"), 32<<20)
	addr, srv := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(big) })
	c := dialRaw(t, addr)
	// Windows large enough that the response fills the socket and its writer blocks.
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	c.open(1, "/big", true)
	// PINGs until the gateway stops reading them: once the response has filled the socket its
	// writer blocks, and the answers owed pile up to the bound. The count is a bound on a
	// gateway that never gives up (about 17 MB of PINGs), not the expected number.
	var err error
	for i := 0; i < 1_000_000 && err == nil; i++ {
		err = c.fr.WritePing(false, [8]byte{byte(i)})
	}
	// The connection ends: reading what the gateway sent runs into its end.
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, rerr := io.Copy(io.Discard, c.conn); rerr != nil && strings.Contains(rerr.Error(), "timeout") {
		t.Fatalf("the connection is still open: %v", rerr)
	}
	for deadline := time.Now().Add(10 * time.Second); srv.OpenConnections() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still serves the flooding connection")
		}
	}
}

// TestContinuationOfARefusedHeaderBlockEndsTheConnection: a HEADERS frame refused before its
// block could be decoded (a pad length beyond the frame: a stream error) and continued with
// CONTINUATION leaves the HPACK state unknown, so the connection ends with GOAWAY
// PROTOCOL_ERROR instead of decoding the rest as part of another block.
func TestContinuationOfARefusedHeaderBlockEndsTheConnection(t *testing.T) {
	s := testSettings
	s.Engine = EngineNative
	addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
		_, _ = io.ReadAll(ctx.RequestBodyStream())
	})
	c := dialRaw(t, addr)
	c.open(1, "/first", false) // open, its body still to come: CONTINUATION must not end it
	block := c.headerBlock("/second")
	// PADDED (0x8) without END_HEADERS: pad length 200 in a frame shorter than that.
	payload := append([]byte{200}, block...)
	if err := c.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded, 3, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteContinuation(3, true, c.headerBlock("/third")); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WritePing(false, [8]byte{7}); err != nil {
		t.Fatal(err)
	}
	f, err := c.readUntil(func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return isGoAway(f) || (ok && p.IsAck())
	})
	if err != nil || !isGoAway(f) {
		t.Fatalf("the connection went on after the continued block (%v, %v)", f, err)
	}
	if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", code)
	}
}

// TestRequestTrailersAppearAtTheBodysEnd: an upstream's transport holds the request's trailer
// map (RequestTrailer) from the start of its round trip, iterating it at once, while the
// client's trailer section may arrive at any time. The native engine fills the map only as the
// body's end is read, on the goroutine reading it: a handler that iterates the map while the
// trailers arrive, as net/http's transport does, is no data race (-race found one in the
// end-to-end test before), and finds the values once it has read the body.
func TestRequestTrailersAppearAtTheBodysEnd(t *testing.T) {
	s := testSettings
	s.Engine = EngineNative
	iterating := make(chan struct{})
	addr, _ := serveH2CWith(t, s, func(ctx *fasthttp.RequestCtx) {
		tr := ctx.Conn().(*StreamConn).RequestTrailer()
		close(iterating)
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) { // while the client's trailers arrive
			for k := range tr {
				_ = k
			}
		}
		if len(tr["X-Sum"]) != 0 {
			ctx.Error("trailer values before the body's end", fasthttp.StatusInternalServerError)
			return
		}
		body, err := io.ReadAll(ctx.RequestBodyStream())
		if err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadRequest)
			return
		}
		ctx.SetBodyString(string(body) + " " + strings.Join(tr["X-Sum"], ","))
	})
	c := dialRaw(t, addr)
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "test"}, {":path", "/up"}, {"trailer", "x-sum"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: append([]byte(nil), c.hbuf.Bytes()...), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(1, false, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	<-iterating
	c.hbuf.Reset()
	_ = c.enc.WriteField(hpack.HeaderField{Name: "x-sum", Value: "7"})
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: append([]byte(nil), c.hbuf.Bytes()...), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if _, err := c.readUntil(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			got = append(got, d.Data()...)
			return d.StreamEnded()
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abc 7" {
		t.Fatalf("body %q, want \"abc 7\"", got)
	}
}
