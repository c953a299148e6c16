package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// genStream writes a stream of pipelined requests with valid framing, drawn from r: bodies
// with Content-Length, chunked (sizes in either case with leading zeros, extensions, trailers)
// or none, and body bytes full of LFs, CRLFs and text that looks like a head. It returns the
// stream and, per request, its offset, method, target and body.
func genStream(r *rand.Rand) (stream []byte, reqs []genRequest) {
	var b bytes.Buffer
	for n := 1 + r.IntN(5); n > 0; n-- {
		g := genRequest{Offset: b.Len(), Method: []string{"GET", "POST", "PUT", "DELETE", "PATCH"}[r.IntN(5)]}
		g.Target = fmt.Sprintf("/r/%d", r.IntN(1000))
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: a.example\r\n", g.Method, g.Target)
		for range r.IntN(4) {
			b.WriteString([]string{"Content-Type: text/plain\r\n", "Content-Language: en\r\n", "Cookie: c=1\r\n",
				"Trailer: X-Sum\r\n", "Transfer-Extra: 1\r\n", "X-Long: " + strings.Repeat("v", r.IntN(300)) + "\r\n"}[r.IntN(6)])
		}
		body := genBody(r)
		framing := r.IntN(3)
		if len(body) > 0 && framing == 0 {
			framing = 1 + r.IntN(2)
		}
		if g.Method == "GET" && framing == 0 {
			body = nil
		}
		switch framing {
		case 1:
			fmt.Fprintf(&b, "%s:%s%d%s\r\n\r\n", randCase(r, "Content-Length"), []string{"", " ", "\t "}[r.IntN(3)], len(body), []string{"", " "}[r.IntN(2)])
			b.Write(body)
		case 2:
			fmt.Fprintf(&b, "%s: %s\r\n\r\n", randCase(r, "Transfer-Encoding"), randCase(r, "chunked"))
			for rest := body; len(rest) > 0; {
				k := min(len(rest), 1+r.IntN(40))
				size := strings.Repeat("0", r.IntN(3)) + fmt.Sprintf("%x", k)
				if r.IntN(2) == 0 {
					size = strings.ToUpper(size)
				}
				ext := []string{"", ";a=b", ";x", " ", "\t"}[r.IntN(5)]
				fmt.Fprintf(&b, "%s%s\r\n%s\r\n", size, ext, rest[:k])
				rest = rest[k:]
			}
			b.WriteString("0\r\n")
			for range r.IntN(3) {
				b.WriteString("X-Sum: 1\r\n")
			}
			b.WriteString("\r\n")
		default:
			b.WriteString("\r\n")
		}
		g.Body = string(body)
		reqs = append(reqs, g)
	}
	return b.Bytes(), reqs
}

type genRequest struct {
	Offset               int
	Method, Target, Body string
}

func genBody(r *rand.Rand) []byte {
	if r.IntN(3) == 0 {
		return nil
	}
	parts := []string{"\n", "\r\n", "\n\n", "\r\n\r\n", "GET / HTTP/1.1\r\n", "0\r\n\r\n", "abc", "{}", "\r"}
	var b []byte
	for range r.IntN(30) {
		b = append(b, parts[r.IntN(len(parts))]...)
	}
	return b
}

func randCase(r *rand.Rand, s string) string {
	b := []byte(s)
	for i := range b {
		if r.IntN(2) == 0 {
			b[i] = lower(b[i])
		} else if b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// netHTTPStarts reads stream with net/http's server-side parser and returns where each request
// began.
func netHTTPStarts(stream []byte) ([]int, error) {
	cr := &countingReader{r: bytes.NewReader(stream)}
	br := bufio.NewReader(cr)
	var offsets []int
	for {
		at := cr.n - br.Buffered()
		if _, err := br.Peek(1); err == io.EOF {
			return offsets, nil
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return offsets, err
		}
		offsets = append(offsets, at)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return offsets, err
		}
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// checkAgainstNetHTTP: on a stream with valid framing, the scanner finds every request where
// net/http's parser does, and refuses nothing.
func checkAgainstNetHTTP(t *testing.T, stream []byte, reqs []genRequest) {
	t.Helper()
	want, err := netHTTPStarts(stream)
	if err != nil {
		t.Fatalf("net/http refused a generated stream: %v\n%q", err, stream)
	}
	heads, refused, stopped := starts(string(stream))
	if !slices.Equal(heads, want) || refused >= 0 || stopped {
		t.Fatalf("scanner: heads at %v, refused at %d, stopped %v; net/http: %v\n%q", heads, refused, stopped, want, stream)
	}
	for i, g := range reqs {
		if i >= len(heads) || heads[i] != g.Offset {
			t.Fatalf("request %d written at %d, found at %v", i, g.Offset, heads)
		}
	}
}

// TestConnFramingMatchesNetHTTP is the differential check: 3000 generated streams of pipelined
// requests, each read by the scanner and by net/http.
func TestConnFramingMatchesNetHTTP(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 2026))
	for range 3000 {
		stream, reqs := genStream(r)
		checkAgainstNetHTTP(t, stream, reqs)
	}
}

// FuzzConnFramingMatchesNetHTTP: the generator driven by the fuzzer's seeds.
func FuzzConnFramingMatchesNetHTTP(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(17), uint64(2026))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		stream, reqs := genStream(rand.New(rand.NewPCG(a, b)))
		checkAgainstNetHTTP(t, stream, reqs)
	})
}

// pipeConn delivers a stream in pieces of random size, then blocks until closed, as a client
// that keeps its connection open would; without a closed channel it times out instead, as the
// server's read_timeout would end a wait for bytes that never come. Writes are discarded.
type pipeConn struct {
	net.Conn
	pieces [][]byte
	closed chan struct{}
}

func (p *pipeConn) Read(b []byte) (int, error) {
	if len(p.pieces) == 0 {
		if p.closed == nil {
			return 0, os.ErrDeadlineExceeded
		}
		<-p.closed
		return 0, net.ErrClosed
	}
	n := copy(b, p.pieces[0])
	if p.pieces[0] = p.pieces[0][n:]; len(p.pieces[0]) == 0 {
		p.pieces = p.pieces[1:]
	}
	return n, nil
}
func (p *pipeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// serveThroughConn serves stream with the fasthttp server configuration the gateway uses
// (streamed request bodies), through a Conn, and returns the requests the handler saw and the
// error that ended the connection.
func serveThroughConn(r *rand.Rand, stream []byte, requests int) ([]genRequest, error) {
	p := &pipeConn{}
	if requests >= 0 {
		p.closed = make(chan struct{})
	}
	for rest := stream; len(rest) > 0; {
		k := min(len(rest), 1+r.IntN(200))
		p.pieces, rest = append(p.pieces, rest[:k]), rest[k:]
	}
	var seen []genRequest
	s := &fasthttp.Server{
		StreamRequestBody: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			body := ctx.Request.Body()
			if rs := ctx.RequestBodyStream(); rs != nil {
				body, _ = io.ReadAll(rs)
			}
			seen = append(seen, genRequest{Method: string(ctx.Method()), Target: string(ctx.RequestURI()), Body: string(body)})
			if len(seen) == requests {
				close(p.closed) // every request served: end the connection as the client would
			}
		},
	}
	err := s.ServeConn(newConn(p))
	return seen, err
}

// TestConnFollowsFasthttp holds the scanner to the parser it runs in front of: fasthttp, set up
// as the gateway sets it up, serves every request of 1000 generated streams through a Conn, with
// the same bodies; and a bare LF ending the head after them is answered at once (the connection
// ends with ErrBareLF instead of waiting for more bytes).
func TestConnFollowsFasthttp(t *testing.T) {
	r := rand.New(rand.NewPCG(9112, 7))
	for range 1000 {
		stream, reqs := genStream(r)
		seen, err := serveThroughConn(r, stream, len(reqs))
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Fatalf("serving a generated stream: %v\n%q", err, stream)
		}
		for i := range reqs {
			reqs[i].Offset = 0
		}
		if !slices.Equal(seen, reqs) {
			t.Fatalf("fasthttp saw %+v\nwant %+v\nstream %q", seen, reqs, stream)
		}
		bad := slices.Concat(stream, []byte("GET /bad HTTP/1.1\r\nHost: a\r\n\n"))
		seen, err = serveThroughConn(r, bad, -1)
		if !errors.Is(err, ErrBareLF) || len(seen) != len(reqs) {
			t.Fatalf("with a bare LF after %d requests: served %d, err %v\n%q", len(reqs), len(seen), err, bad)
		}
	}
}
