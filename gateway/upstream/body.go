package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
)

// Body framing of a streamed upstream response.
const (
	framingFixed   = iota // Content-Length
	framingChunked        // Transfer-Encoding: chunked
	framingClose          // delimited by the upstream closing the connection
)

var (
	errChunkSyntax = errors.New("malformed chunked encoding from upstream")
	errTruncated   = errors.New("upstream closed the connection in the middle of the body")
)

// maxChunkLine bounds a chunk-size line (size, extensions) or trailer line.
const maxChunkLine = 4096

// bodyStream reads a large or chunked upstream response body straight from the upstream
// connection while fasthttp writes it to the client, so big responses never sit whole in memory.
// The connection stays checked out until Close: it goes back to the pool only when the body was
// read to its clean end, and is closed otherwise (client gone, upstream broken, limit hit).
//
// fasthttp calls Read and then Close from the connection's serving goroutine; one bodyStream is
// never used concurrently.
type bodyStream struct {
	pc        *pconn
	target    *Target
	framing   int
	remaining int64 // framingFixed: bytes left; framingChunked: bytes left in this chunk
	limit     int64 // max_response_bytes
	read      int64
	timeout   time.Duration // per-read deadline: the upstream must make progress this often
	reusable  bool          // the upstream allows another request on this connection
	done      bool          // the body ended cleanly
	err       error
}

var bodyStreamPool = sync.Pool{New: func() any { return new(bodyStream) }}

func newBodyStream(pc *pconn, t *Target, framing int, contentLength int64, limit int64, timeout time.Duration, reusable bool) *bodyStream {
	s := bodyStreamPool.Get().(*bodyStream)
	*s = bodyStream{pc: pc, target: t, framing: framing, limit: limit, timeout: timeout, reusable: reusable && framing != framingClose}
	if framing == framingFixed {
		s.remaining = contentLength
		s.done = contentLength == 0
	}
	return s
}

// Read implements io.Reader.
func (s *bodyStream) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.timeout > 0 {
		_ = s.pc.setReadDeadline(time.Now().Add(s.timeout), protocol.DeadlineSlack(s.timeout))
	}
	var n int
	var err error
	switch s.framing {
	case framingFixed:
		n, err = s.readFixed(p)
	case framingChunked:
		n, err = s.readChunked(p)
	default:
		n, err = s.pc.br.Read(p)
		if err == io.EOF {
			s.done = true
		}
	}
	s.read += int64(n)
	if s.read > s.limit {
		s.err = errTooLarge
		return n, s.err
	}
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (s *bodyStream) readFixed(p []byte) (int, error) {
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.pc.br.Read(p)
	s.remaining -= int64(n)
	if s.remaining == 0 {
		s.done = true
		return n, io.EOF
	}
	if err == io.EOF {
		return n, errTruncated
	}
	return n, err
}

func (s *bodyStream) readChunked(p []byte) (int, error) {
	if s.remaining == 0 {
		size, err := readChunkSize(s.pc.br)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			if err := discardTrailers(s.pc.br); err != nil {
				return 0, err
			}
			s.done = true
			return 0, io.EOF
		}
		s.remaining = size
	}
	if int64(len(p)) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.pc.br.Read(p)
	s.remaining -= int64(n)
	if err == io.EOF {
		return n, errTruncated
	}
	if err != nil {
		return n, err
	}
	if s.remaining == 0 {
		if err := expectCRLF(s.pc.br); err != nil {
			return n, err
		}
	}
	return n, nil
}

// readChunkSize parses "1a2b;ext=1\r\n" with the rule net/http applies (RFC 9112 §7.1 and its
// erratum 7633): the line ends in CRLF, with no other CR and no bare LF; hex digits, then an
// extension after ';' or optional whitespace at the very end. Two parsers in a chain that
// disagree on where a chunk ends is how responses get desynchronised, so the gateway accepts no
// more than the Go upstreams it fronts (the differential test holds it to that).
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxChunkLine {
		return 0, errChunkSyntax
	}
	if err != nil {
		if err == io.EOF {
			return 0, errTruncated
		}
		return 0, err
	}
	return parseChunkSize(line)
}

// parseChunkSize is readChunkSize on a line already in hand, its LF included.
func parseChunkSize(line []byte) (int64, error) {
	if len(line) > maxChunkLine {
		return 0, errChunkSyntax
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errChunkSyntax // bare LF
	}
	line = line[:len(line)-2]
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	var size int64
	digits := 0
	for i, c := range line {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		case c == ';' && digits > 0:
			if bytes.IndexByte(line[i:], '\r') >= 0 {
				return 0, errChunkSyntax
			}
			return size, nil
		default:
			return 0, errChunkSyntax
		}
		digits++
		if digits > 15 { // 16^15 bytes is far past any limit; more digits would overflow
			return 0, errChunkSyntax
		}
		size = size<<4 | int64(v)
	}
	if digits == 0 {
		return 0, errChunkSyntax
	}
	return size, nil
}

// expectCRLF reads the CRLF that ends a chunk's data; nothing else will do.
func expectCRLF(br *bufio.Reader) error {
	c, err := br.ReadByte()
	if err != nil {
		return errTruncated
	}
	if c != '\r' {
		return errChunkSyntax
	}
	if c, err = br.ReadByte(); err != nil {
		return errTruncated
	}
	if c != '\n' {
		return errChunkSyntax
	}
	return nil
}

// discardTrailers skips trailer fields up to the empty line. Trailers are not forwarded: the
// gateway re-frames the body for the client and does not promise trailers.
func discardTrailers(br *bufio.Reader) error {
	for range 64 {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return errChunkSyntax
		}
		if err != nil {
			return errTruncated
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return nil
		}
	}
	return errChunkSyntax
}

// Close ends the exchange: the connection goes back to the pool if the body ended cleanly and
// the upstream keeps connections alive, and is closed otherwise.
func (s *bodyStream) Close() error {
	if s.pc == nil {
		return nil
	}
	s.target.finish(s.pc, s.done && s.err == nil && s.reusable, time.Now().UnixNano())
	s.pc, s.target = nil, nil
	bodyStreamPool.Put(s)
	return nil
}

// Detach hands the rest of a streamed upstream response body to a new reader, so a policy can
// put its own reader in front of it (the response cache reading a body it may store): the
// original stream's Close becomes a no-op, and the returned reader's Close does what it would
// have done (return the connection to the pool after a clean end, close it otherwise). It
// returns nil when stream is not an upstream body stream or is already closed.
func Detach(stream io.Reader) io.ReadCloser {
	if sb, ok := stream.(*spooledBody); ok {
		return detachSpooled(sb)
	}
	s, ok := stream.(*bodyStream)
	if !ok || s.pc == nil {
		return nil
	}
	d := bodyStreamPool.Get().(*bodyStream)
	*d = *s
	s.pc, s.target = nil, nil
	return d
}
