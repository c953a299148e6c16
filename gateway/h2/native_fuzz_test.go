package h2

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The native engine reads what any client sends. FuzzNativeConn (and FuzzXNetConn for the x/net
// engine) plays a client that sends a
// sequence of frames built from the fuzzer's bytes (well-formed requests, and frames of any
// type, flags, stream and payload), then a PING, reads everything the engine answers until the
// PING's acknowledgement or the end of the connection, and closes. What must hold whatever was
// sent:
//   - the engine never panics;
//   - every byte it sends parses as HTTP/2 frames (x/net's Framer, header blocks decoded and
//     checked), no DATA frame larger than the client allows, no frame after a GOAWAY for a
//     stream above its last stream id;
//   - once the client has closed, the connection and every handler it started end (the
//     server's connection count and the process's goroutines come back), so nothing the
//     client sent can hold a goroutine or a stream forever.

// fuzzOp kinds, chosen by an input byte.
const (
	opRaw = iota
	opRequest
	opData
	opWindowUpdate
	opSettings
	opReset
	opPing
	opPriority
	opTrailers
	numOps
)

// fuzzHandler answers by path, so inputs reach every way a response leaves: a small body, one
// larger than the windows, a body streamed in pieces, trailers, and a request body read whole.
func fuzzHandler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/echo":
		// As the proxy reads it: no stream when the head said there is no body.
		stream := ctx.RequestBodyStream()
		if stream == nil {
			ctx.SetBody(ctx.PostBody())
			return
		}
		// As an HTTP/2 upstream's transport uses the trailer map: its names at once, while the
		// client may be sending the section, its values once the body has ended.
		var trailer http.Header
		if sc, ok := ctx.Conn().(*StreamConn); ok {
			trailer = sc.RequestTrailer()
		}
		for name := range trailer {
			ctx.Response.Header.Set("X-Declared", name)
		}
		b, err := io.ReadAll(stream)
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
			return
		}
		for name, values := range trailer {
			ctx.Response.Header.Set("X-Trailer-"+name, strings.Join(values, ","))
		}
		ctx.SetBody(b)
	case "/big":
		ctx.SetBody(bytes.Repeat([]byte("b"), 100_000))
	case "/stream":
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range 4 {
				_, _ = w.WriteString(strconv.Itoa(i) + "-piece ")
				if w.Flush() != nil {
					return
				}
			}
		})
	case "/trailer":
		ctx.Response.Header.Set("Trailer", "X-Sum")
		ctx.Response.Header.Set("X-Sum", "7")
		ctx.SetBodyString("with a trailer")
	default:
		ctx.SetBodyString("ok")
	}
}

var fuzzPaths = []string{"/", "/echo", "/big", "/stream", "/trailer", "/echo?x=1", "*", ""}
var fuzzMethods = []string{"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "G T", ""}

// fuzzClient turns the fuzzer's bytes into frames. Every read past the end yields zero, so any
// input is a valid program.
type fuzzClient struct {
	in []byte
	// maxFrame is the largest SETTINGS_MAX_FRAME_SIZE the client has sent: the largest DATA
	// frame the gateway may send it.
	maxFrame *atomic.Uint32
	// opened are the streams the client sent a request head on and did not reset itself.
	opened *streamSet
	fr     *http2.Framer
	enc    *hpack.Encoder
	hb     bytes.Buffer
}

func (c *fuzzClient) byte() byte {
	if len(c.in) == 0 {
		return 0
	}
	b := c.in[0]
	c.in = c.in[1:]
	return b
}

func (c *fuzzClient) uint32() uint32 {
	return uint32(c.byte())<<24 | uint32(c.byte())<<16 | uint32(c.byte())<<8 | uint32(c.byte())
}

func (c *fuzzClient) bytes(n int) []byte {
	n = min(n, len(c.in))
	b := c.in[:n]
	c.in = c.in[n:]
	return b
}

// stream picks a stream id: mostly client (odd) ids, small enough to collide.
func (c *fuzzClient) stream() uint32 {
	b := c.byte()
	if b&0x80 != 0 {
		return uint32(b & 0x0f) // any, 0 and even ids included
	}
	return uint32(b&0x0f)*2 + 1
}

// step writes one frame; it returns false when the input is used up.
func (c *fuzzClient) step() (bool, error) {
	if len(c.in) == 0 {
		return false, nil
	}
	switch c.byte() % numOps {
	case opRaw:
		typ, flags, id := http2.FrameType(c.byte()%11), http2.Flags(c.byte()), c.stream()
		return true, c.fr.WriteRawFrame(typ, flags, id, c.bytes(int(c.byte())))
	case opRequest:
		id, flags := c.stream(), c.byte()
		c.hb.Reset()
		method := fuzzMethods[int(flags>>5)%len(fuzzMethods)]
		fields := []hpack.HeaderField{
			{Name: ":method", Value: method},
			{Name: ":scheme", Value: "http"},
			{Name: ":path", Value: fuzzPaths[int(c.byte())%len(fuzzPaths)]},
			{Name: ":authority", Value: "fuzz.test"},
		}
		if flags&0x04 != 0 {
			fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(int(c.byte()))})
		}
		if flags&0x08 != 0 {
			fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"}, hpack.HeaderField{Name: "trailer", Value: "x-sum"})
		}
		if flags&0x10 != 0 { // a field that makes the request malformed
			fields = append(fields, [...]hpack.HeaderField{
				{Name: "connection", Value: "close"}, {Name: "Upper", Value: "x"}, {Name: ":path", Value: "/again"},
				{Name: "x", Value: "a\x00b"}, {Name: ":status", Value: "200"}, {Name: "te", Value: "gzip"},
			}[int(c.byte())%6])
		}
		for _, f := range fields {
			if err := c.enc.WriteField(f); err != nil {
				return false, err
			}
		}
		block := c.hb.Bytes()
		endStream := flags&0x01 != 0
		if flags&0x02 != 0 && len(block) > 1 { // split into HEADERS and CONTINUATION
			cut := 1 + int(c.byte())%(len(block)-1)
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:cut], EndStream: endStream}); err != nil {
				return false, err
			}
			c.opened.add(id)
			return true, c.fr.WriteContinuation(id, true, block[cut:])
		}
		c.opened.add(id)
		return true, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true})
	case opData:
		id, b := c.stream(), c.byte()
		return true, c.fr.WriteData(id, b&0x80 != 0, bytes.Repeat([]byte("d"), int(b&0x7f)*8))
	case opWindowUpdate:
		id := c.stream()
		return true, c.fr.WriteWindowUpdate(id, c.uint32()&(1<<31-1))
	case opSettings:
		if c.byte()&1 != 0 {
			return true, c.fr.WriteSettingsAck()
		}
		set := http2.Setting{ID: http2.SettingID(c.byte() % 8), Val: c.uint32()}
		if set.ID == http2.SettingMaxFrameSize && set.Valid() == nil && set.Val > c.maxFrame.Load() {
			// Raised before it is sent: the gateway may use it as soon as it reads it.
			c.maxFrame.Store(set.Val)
		}
		return true, c.fr.WriteSettings(set)
	case opReset:
		id := c.stream()
		c.opened.remove(id)
		return true, c.fr.WriteRSTStream(id, http2.ErrCode(c.byte()%14))
	case opPing:
		var data [8]byte
		copy(data[:], c.bytes(8))
		return true, c.fr.WritePing(c.byte()&1 != 0, data)
	case opTrailers:
		id := c.stream()
		c.hb.Reset()
		if err := c.enc.WriteField(hpack.HeaderField{Name: "x-sum", Value: strconv.Itoa(int(c.byte()))}); err != nil {
			return false, err
		}
		return true, c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: true, EndHeaders: true})
	case opPriority:
		id := c.stream()
		return true, c.fr.WritePriority(id, http2.PriorityParam{StreamDep: c.stream(), Weight: c.byte(), Exclusive: c.byte()&1 != 0})
	}
	return true, nil
}

// fuzzSeeds are programs for fuzzClient: ordinary exchanges to start the fuzzer from.
var fuzzSeeds = [][]byte{
	// An opRequest is: stream, flags (0x01 END_STREAM, 0x02 split into CONTINUATION, 0x04
	// content-length, 0x08 te: trailers, 0x10 a malformed field; the top three bits pick the
	// method), path, then a byte for each of content-length, the split and the malformed field.
	{opRequest, 0, 0x01, 0},                                                                      // GET /
	{opRequest, 0, 0x24, 1, 4, opData, 0, 0x80 | 1},                                              // POST /echo, content-length 4, 8 bytes sent
	{opRequest, 0, 0x20, 1, opData, 0, 0x82},                                                     // POST /echo, 16 bytes of unknown length
	{opRequest, 0, 0x03, 2, 3},                                                                   // GET /big in HEADERS and CONTINUATION
	{opSettings, 0, 4, 0, 0, 0, 10, opRequest, 0, 0x01, 2},                                       // a 10-byte stream window, then GET /big
	{opRequest, 0, 0x01, 3, opRequest, 1, 0x09, 4, opReset, 0, 8},                                // streamed and with trailers; the first cancelled
	{opRaw, 9, 4, 1, 3, 1, 2, 3},                                                                 // a CONTINUATION without HEADERS
	{opWindowUpdate, 0x80, 0x7f, 0xff, 0xff, 0xff, opWindowUpdate, 0x80, 0x7f, 0xff, 0xff, 0xff}, // the connection window overflows
	{opRequest, 0, 0x11, 0, 1},                                                                   // a field name with an upper-case letter
	{opPriority, 0, 0, 16, 0},                                                                    // a stream depending on itself
	{opRequest, 0, 0x28, 1, opData, 0, 0x01, opTrailers, 0, 7},                                   // POST /echo declaring a trailer, a body, the trailer section
}

func FuzzNativeConn(f *testing.F) { fuzzConn(f, EngineNative) }

// FuzzXNetConn holds the fallback engine, x/net's server behind the bridge, to the same.
func FuzzXNetConn(f *testing.F) { fuzzConn(f, EngineXNet) }

func fuzzConn(f *testing.F, engine Engine) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	s := testSettings
	s.Engine = engine
	s.MaxConcurrentStreams = 4
	s.MaxUploadBufferPerStream = 1 << 10
	s.MaxUploadBufferPerConnection = 4 << 10
	srv := NewServer(s, Handler{Serve: fuzzHandler, ParseError: func(ctx *fasthttp.RequestCtx, err error) {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
	}, Logger: quiet{}})
	addr := testenv.ServeTCP(f, srv.ServeConn)

	f.Fuzz(func(t *testing.T, program []byte) {
		before := runtime.NumGoroutine()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(fuzzPatience))
		// The client writes from its own goroutine: a client that keeps sending while the
		// gateway has stopped reading must not deadlock the test against a full socket.
		var opened streamSet
		var maxFrame atomic.Uint32
		maxFrame.Store(maxFrameSize)
		wrote := make(chan error, 1)
		go func() {
			fr := http2.NewFramer(conn, nil)
			c := &fuzzClient{in: program, fr: fr, maxFrame: &maxFrame, opened: &opened}
			c.enc = hpack.NewEncoder(&c.hb)
			// The preface, and the SETTINGS frame that must follow it (RFC 9113, section 3.4).
			if _, err := io.WriteString(conn, Preface); err != nil || fr.WriteSettings() != nil {
				wrote <- nil
				return
			}
			for {
				more, err := c.step()
				if err != nil || !more {
					break
				}
			}
			_ = fr.WritePing(false, [8]byte{'f', 'u', 'z', 'z', 'e', 'n', 'd', '!'})
			wrote <- nil
		}()
		if len(program)%2 == 1 {
			// Half of the programs hang up as soon as they are sent, whatever the gateway is
			// doing with them: the teardown of streams in every state.
			<-wrote
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		} else {
			heads, err := checkServerFrames(conn, &maxFrame, &opened)
			if err != nil {
				t.Fatalf("program %x: the gateway sent %v", program, err)
			}
			t.Logf("%d response heads", heads)
			<-wrote
			conn.Close()
		}
		// Everything the connection started ends once the client is gone.
		deadline := time.Now().Add(5 * time.Second)
		for srv.OpenConnections() > 0 || runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("program %x: %d connections and %d goroutines (%d before) 5 s after the client closed:\n%s",
					program, srv.OpenConnections(), runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// streamSet is a set of stream ids, safe for concurrent use.
type streamSet struct {
	mu  sync.Mutex
	ids map[uint32]bool
}

func (s *streamSet) add(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[uint32]bool{}
	}
	s.ids[id] = true
}

func (s *streamSet) remove(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
}

// waitingFor reports whether a stream in s at or below last has not ended.
func (s *streamSet) waitingFor(ended map[uint32]bool, last uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.ids {
		if id <= last && !ended[id] {
			return true
		}
	}
	return false
}

// fuzzSilence is how long the client keeps reading, once the gateway has answered its last
// PING, for the answers of streams that have not ended: a handler answers after the reader
// has acknowledged the PING.
const fuzzSilence = 20 * time.Millisecond

// fuzzPatience bounds how long the gateway may take to answer the client's last PING (or end
// the connection); the reader answers a PING at once, whatever its streams are doing.
const fuzzPatience = 3 * time.Second

// checkServerFrames reads what the gateway sends until the acknowledgement of the client's
// last PING and the end of every stream it opened (or fuzzSilence without a frame after the
// acknowledgement, or the end of the connection), and returns the number of response heads
// and the first thing that is not HTTP/2 as RFC 9113 has a server send it.
func checkServerFrames(conn net.Conn, maxFrame *atomic.Uint32, opened *streamSet) (heads int, err error) {
	fr := http2.NewFramer(nil, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	fr.SetMaxReadFrameSize(1<<24 - 1)
	goAway := uint32(1<<31 - 1)
	ended := map[uint32]bool{}
	acked := false
	for {
		if acked {
			if !opened.waitingFor(ended, goAway) {
				return heads, nil
			}
			_ = conn.SetReadDeadline(time.Now().Add(fuzzSilence))
		}
		f, err := fr.ReadFrame()
		if err != nil {
			var ce http2.ConnectionError
			var se http2.StreamError
			if errors.As(err, &ce) || errors.As(err, &se) || errors.Is(err, http2.ErrFrameTooLarge) {
				return heads, err
			}
			if !acked && errors.Is(err, os.ErrDeadlineExceeded) {
				return heads, errors.New("no answer to the PING and no end of the connection in " + fuzzPatience.String())
			}
			return heads, nil // the connection ended, or the silence after the PING's answer
		}
		if id := f.Header().StreamID; id > goAway && f.Header().Type != http2.FrameGoAway {
			return heads, errors.New("a " + f.Header().Type.String() + " frame on stream " + strconv.Itoa(int(id)) + " after a GOAWAY with last stream " + strconv.Itoa(int(goAway)))
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) && (f.Header().Type == http2.FrameData || f.Header().Type == http2.FrameHeaders) ||
			f.Header().Type == http2.FrameRSTStream {
			ended[f.Header().StreamID] = true
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if len(f.Data()) > int(maxFrame.Load()) {
				return heads, errors.New("a DATA frame of " + strconv.Itoa(len(f.Data())) + " bytes, beyond the client's SETTINGS_MAX_FRAME_SIZE")
			}
		case *http2.MetaHeadersFrame:
			if f.Truncated {
				return heads, errors.New("a header block beyond 1 MiB")
			}
			if f.StreamID%2 == 0 {
				return heads, errors.New("HEADERS on the even stream " + strconv.Itoa(int(f.StreamID)))
			}
			if f.PseudoValue("status") != "" {
				heads++
			} else if !f.StreamEnded() {
				return heads, errors.New("a response head without :status on stream " + strconv.Itoa(int(f.StreamID)))
			}
		case *http2.GoAwayFrame:
			if f.LastStreamID > goAway {
				return heads, errors.New("a GOAWAY raising its last stream id")
			}
			goAway = f.LastStreamID
		case *http2.PingFrame:
			if f.IsAck() && f.Data == [8]byte{'f', 'u', 'z', 'z', 'e', 'n', 'd', '!'} {
				acked = true
			}
		}
	}
}
