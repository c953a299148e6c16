package upstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestStatusOutsideThreeDigitsIsAProtocolError: a status line whose code is not three digits
// from 100 to 999 (RFC 9110, section 15) is not HTTP; the gateway fails the exchange as a
// protocol error (502 to the client) rather than pass it on, as nginx does ("upstream sent no
// valid HTTP/1.0 header"). HTTP/2 could not carry it (:status is three digits), and a
// forwarded one would corrupt the header block of every stream on the client's connection.
func TestStatusOutsideThreeDigitsIsAProtocolError(t *testing.T) {
	for _, tc := range []struct {
		status string
		ok     bool
	}{
		{"200 OK", true},
		{"299 Unregistered", true},
		{"599 Unregistered", true},
		{"999 Highest", true},
		{"42 Short", false},
		{"099 Leading zero", false},
		{"0 Zero", false},
		{"000 Zeros", false}, // fasthttp reports 000 as 200
		{"001 One", false},
		{"1005 Long", false},
	} {
		t.Run(tc.status, func(t *testing.T) {
			addr := startRawH1Backend(t, "HTTP/1.1 "+tc.status+"\r\nContent-Length: 2\r\n\r\nok")
			tg := newTarget("app", addr, 1, testSettings())
			resp, err := get(t, tg, "/")
			switch {
			case tc.ok && err != nil:
				t.Fatalf("status %q: %v, want the response", tc.status, err)
			case tc.ok && string(resp.Body()) != "ok":
				t.Fatalf("status %q: body %q", tc.status, resp.Body())
			case !tc.ok && kindOf(err) != KindProtocol:
				t.Fatalf("status %q: %v (status %d), want KindProtocol", tc.status, err, resp.StatusCode())
			}
		})
	}
}

// TestH2StatusOutsideThreeDigitsIsAProtocolError: the same over HTTP/2, where x/net's
// transport takes any number for :status. The server is x/net's Framer writing the head by
// hand: no HTTP/2 server library sends such a status.
func TestH2StatusOutsideThreeDigitsIsAProtocolError(t *testing.T) {
	for _, tc := range []struct {
		status string
		ok     bool
	}{{"204", true}, {"099", false}, {"42", false}, {"1005", false}} {
		t.Run(tc.status, func(t *testing.T) {
			addr := testenv.ServeTCP(t, func(c net.Conn) { serveRawH2Status(c, tc.status) })
			reg := NewRegistry(nil, nil)
			t.Cleanup(reg.Close)
			u := buildH2(t, reg, config.ProtocolH2C, addr)
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("/")
			req.Header.SetHost("backend")
			resp := &fasthttp.Response{}
			err := u.DoH2(u.Targets()[0], req, resp, newRoundTrip(2*time.Second), &H2RoundTrip{})
			switch {
			case tc.ok && (err != nil || resp.StatusCode() != 204):
				t.Fatalf(":status %s: %v, status %d", tc.status, err, resp.StatusCode())
			case !tc.ok && kindOf(err) != KindProtocol:
				t.Fatalf(":status %s: %v (status %d), want KindProtocol", tc.status, err, resp.StatusCode())
			}
			if !tc.ok && u.Targets()[0].Stats().Failures != 1 {
				t.Fatalf(":status %s counted as %d failures, want 1", tc.status, u.Targets()[0].Stats().Failures)
			}
		})
	}
}

// serveRawH2Status answers every request on the h2c connection c with :status status and no
// body.
func serveRawH2Status(c net.Conn, status string) {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	if fr.WriteSettings() != nil {
		return
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && fr.WriteSettingsAck() != nil {
				return
			}
		case *http2.HeadersFrame:
			if !f.StreamEnded() {
				continue
			}
			block.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}) != nil {
				return
			}
		}
	}
}

// TestSpaceInResponseFieldNameIsAProtocolError: fasthttp takes "X Y: 1" in a response head (it
// only marks the head Connection: close); the gateway refuses the response, as nginx and
// HAProxy do. A space before the colon is removed, as RFC 9112 (section 5.1) has a proxy do.
func TestSpaceInResponseFieldNameIsAProtocolError(t *testing.T) {
	for _, tc := range []struct {
		field string
		ok    bool
	}{{"X-A: 1", true}, {"X-A : 1", true}, {"X Y: 1", false}, {"X  Y : 1", false}, {"Connection: close", true}} {
		t.Run(tc.field, func(t *testing.T) {
			addr := startRawH1Backend(t, "HTTP/1.1 200 OK\r\n"+tc.field+"\r\nContent-Length: 2\r\n\r\nok")
			resp, err := get(t, newTarget("app", addr, 1, testSettings()), "/")
			switch {
			case tc.ok && (err != nil || string(resp.Body()) != "ok"):
				t.Fatalf("%q: %v %q, want the response", tc.field, err, resp.Body())
			case tc.ok && tc.field == "X-A : 1" && string(resp.Header.Peek("X-A")) != "1":
				t.Fatalf("%q: X-A is %q", tc.field, resp.Header.Peek("X-A"))
			case !tc.ok && kindOf(err) != KindProtocol:
				t.Fatalf("%q: %v, want KindProtocol", tc.field, err)
			}
		})
	}
}

// startRawH1Backend answers every request head on its connections with answer, as written.
func startRawH1Backend(t *testing.T, answer string) string {
	addr, _ := serveRawH1(t, func(c net.Conn) { _, _ = c.Write([]byte(answer)) })
	return addr
}

// serveRawH1 calls answer for every request head on its connections, and counts the
// connections.
func serveRawH1(t *testing.T, answer func(c net.Conn)) (string, *atomic.Int32) {
	conns := new(atomic.Int32)
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				answer(c)
			}
		}
	})
	return addr, conns
}

// TestInterimResponsesAreBounded: an upstream may send a few 1xx heads before its answer (100
// Continue, 103 Early Hints); one that keeps sending them is failed as a protocol error once
// there are more than maxInterim, instead of holding the exchange until its timeout.
func TestInterimResponsesAreBounded(t *testing.T) {
	const hint = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	for _, tc := range []struct {
		interim int
		ok      bool
	}{{0, true}, {maxInterim, true}, {maxInterim + 1, false}, {1000, false}} {
		t.Run(fmt.Sprint(tc.interim), func(t *testing.T) {
			addr := startRawH1Backend(t, strings.Repeat(hint, tc.interim)+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			tg := newTarget("app", addr, 1, testSettings())
			var seen int
			x := newRoundTrip(2 * time.Second)
			x.Informational = func(*fasthttp.ResponseHeader) { seen++ }
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("/")
			req.Header.SetHost("backend")
			resp := &fasthttp.Response{}
			start := time.Now()
			err := tg.Do(req, resp, x)
			switch {
			case tc.ok && (err != nil || string(resp.Body()) != "ok" || seen != tc.interim):
				t.Fatalf("%d interim: %v %q, %d passed on", tc.interim, err, resp.Body(), seen)
			case !tc.ok && kindOf(err) != KindProtocol:
				t.Fatalf("%d interim: %v, want KindProtocol", tc.interim, err)
			case !tc.ok && seen != maxInterim:
				t.Fatalf("%d interim: %d passed on, want %d", tc.interim, seen, maxInterim)
			case time.Since(start) > time.Second:
				t.Fatalf("%d interim: took %v", tc.interim, time.Since(start))
			}
		})
	}
}

// TestContentLengthBesideChunkedIsNotReused: a response with both Content-Length and
// Transfer-Encoding: chunked is read as chunked (RFC 9112, section 6.3: the transfer coding
// wins and the length is dropped before forwarding), but the two framings disagree about where
// it ends, so the connection is not trusted with another exchange. Reused, the bytes the
// Content-Length would have claimed (here a whole second response the upstream smuggled after
// the chunked body) would be read as the answer to the next request.
func TestContentLengthBesideChunkedIsNotReused(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
	for _, tc := range []struct {
		name, head string
		conns      int32
	}{
		{"length first", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 2},
		{"length after", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-length : 5\r\n\r\n", 2},
		{"chunked alone", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 5\r\n\r\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := serveRawH1(t, func(c net.Conn) {
				_, _ = c.Write([]byte(tc.head + "5\r\nhello\r\n0\r\n\r\n"))
				if tc.conns == 2 {
					// The smuggled answer comes in a later segment: one that came with the
					// body would be found left over in the read buffer.
					time.Sleep(2 * time.Millisecond)
					_, _ = c.Write([]byte(smuggled))
				}
			})
			tg := newTarget("app", addr, 1, testSettings())
			for i := range 2 {
				if i > 0 {
					// Long enough for the smuggled bytes to arrive, shorter than the pool's idle
					// check (idleCheckAfter), which would find them.
					time.Sleep(5 * time.Millisecond)
				}
				resp, err := get(t, tg, "/")
				if err != nil || string(resp.Body()) != "hello" {
					t.Fatalf("request %d: %v %q, want the chunked body", i+1, err, resp.Body())
				}
			}
			if n := conns.Load(); n != tc.conns {
				t.Fatalf("%d upstream connections for two requests, want %d", n, tc.conns)
			}
		})
	}
}

func TestLengthBesideChunked(t *testing.T) {
	for _, tc := range []struct {
		buffered string
		want     bool
	}{
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nCONTENT-LENGTH\t: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nContent-Lengths: 5\r\nX: content-length: 5\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nContent-Length: 5\r\n\r\n", false}, // in the body
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Long: aaaa", true},                   // the head goes on: unknown
	} {
		if got := lengthBesideChunked([]byte(tc.buffered)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.buffered, got, tc.want)
		}
	}
}

// TestBrokenFirstChunkIsAProtocolError: a chunked body whose first chunk-size line came with
// the head and breaks the framing rules fails the exchange before the head goes anywhere (the
// client gets a 502, not a cut connection); a good one streams as before.
func TestBrokenFirstChunkIsAProtocolError(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{"2\r\nok\r\n0\r\n\r\n", true},
		{"2;name=value\r\nok\r\n0\r\n\r\n", true},
		{"2 \r\nok\r\n0\r\n\r\n", true}, // whitespace at the very end, as net/http allows
		{" 2\r\nok\r\n0\r\n\r\n", false},
		{"2\nok\n0\n\n", false},
		{"0x2\r\nok\r\n0\r\n\r\n", false},
		{"zz\r\nok\r\n0\r\n\r\n", false},
		{"2\r\r\nok\r\n0\r\n\r\n", false},
	} {
		t.Run(strings.TrimSpace(strings.SplitN(tc.body, "\n", 2)[0]), func(t *testing.T) {
			addr := startRawH1Backend(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.body)
			resp, err := get(t, newTarget("app", addr, 1, testSettings()), "/")
			switch {
			case tc.ok && (err != nil || string(resp.Body()) != "ok"):
				t.Fatalf("%q: %v %q, want the body", tc.body, err, resp.Body())
			case !tc.ok && kindOf(err) != KindProtocol:
				t.Fatalf("%q: %v, want KindProtocol before the body streams", tc.body, err)
			}
		})
	}
}
