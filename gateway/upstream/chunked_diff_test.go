package upstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httputil"
	"net/textproto"
	"testing"
)

// decodeChunked runs the gateway's chunked decoder over wire, reading into small buffers as
// fasthttp does, and returns the body or the first error.
func decodeChunked(wire []byte) ([]byte, error) {
	s := &bodyStream{framing: framingChunked, limit: 1 << 30, pc: &pconn{br: bufio.NewReaderSize(bytes.NewReader(wire), connReadBufferSize)}}
	var body []byte
	buf := make([]byte, 13)
	for {
		n, err := s.readChunked(buf)
		body = append(body, buf[:n]...)
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return body, err
		}
	}
}

// referenceChunked is net/http's reading of the same bytes: httputil's chunked reader for the
// chunks, then the trailer section as net/http reads it (MIME header lines up to an empty line).
func referenceChunked(wire []byte) ([]byte, error) {
	br := bufio.NewReaderSize(bytes.NewReader(wire), connReadBufferSize)
	body, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err != nil {
		return body, err
	}
	_, err = textproto.NewReader(br).ReadMIMEHeader()
	return body, err
}

// chunkedCase builds a chunked encoding from the grammar, then perhaps damages it: a random
// chunk split, extensions, optional whitespace, trailers, and one of the edits that parsers in a
// chain are known to disagree on.
func chunkedCase(r *rand.Rand) []byte {
	var w bytes.Buffer
	for range r.IntN(5) {
		n := 1 + r.IntN(40)
		size := fmt.Sprintf("%x", n)
		switch r.IntN(4) {
		case 0:
			size = fmt.Sprintf("%X", n)
		case 1:
			size = "00" + size
		}
		w.WriteString(size)
		switch r.IntN(5) {
		case 0:
			w.WriteString(";name=value")
		case 1:
			w.WriteString(`;q="quoted; string"`)
		case 2:
			w.WriteString(" \t")
		}
		w.WriteString("\r\n")
		for i := range n {
			w.WriteByte("abcdefghij\r\n0;"[(i+n)%14])
		}
		w.WriteString("\r\n")
	}
	w.WriteString("0\r\n")
	if r.IntN(3) == 0 {
		w.WriteString("Checksum: abc\r\n")
	}
	w.WriteString("\r\n")
	wire := w.Bytes()
	if r.IntN(2) == 0 {
		return wire
	}
	i := r.IntN(len(wire))
	switch r.IntN(7) {
	case 0: // truncate
		return wire[:i]
	case 1: // CRLF → bare LF somewhere
		if j := bytes.Index(wire[i:], []byte("\r\n")); j >= 0 {
			return append(append(append([]byte(nil), wire[:i+j]...), '\n'), wire[i+j+2:]...)
		}
	case 2: // a stray CR
		return append(append(append([]byte(nil), wire[:i]...), '\r'), wire[i:]...)
	case 3: // whitespace inside a size line
		return append(append(append([]byte(nil), wire[:i]...), ' '), wire[i:]...)
	case 4: // one byte replaced
		out := append([]byte(nil), wire...)
		out[i] = "x;\n\r 0-+"[r.IntN(8)]
		return out
	case 5: // one byte dropped
		return append(append([]byte(nil), wire[:i]...), wire[i+1:]...)
	case 6: // one byte doubled
		return append(append(append([]byte(nil), wire[:i+1]...), wire[i]), wire[i+1:]...)
	}
	return wire
}

// checkAgainstReference is the property: where net/http reads a chunked body, the gateway reads
// the same bytes; where net/http refuses the framing, the gateway does too. The gateway's only
// stricter rules (sizes of at most 15 hex digits, a 4 KiB line, trailer lines it discards
// unparsed) are out of the generator's reach.
func checkAgainstReference(t *testing.T, wire []byte) {
	t.Helper()
	got, gotErr := decodeChunked(wire)
	want, wantErr := referenceChunked(wire)
	switch {
	case wantErr == nil && gotErr != nil:
		t.Fatalf("%q: net/http reads %q, the gateway fails: %v", wire, want, gotErr)
	case wantErr != nil && gotErr == nil && !trailerOnly(wire):
		t.Fatalf("%q: net/http refuses it (%v), the gateway reads %q", wire, wantErr, got)
	case wantErr == nil && !bytes.Equal(got, want):
		t.Fatalf("%q: the gateway reads %q, net/http %q", wire, got, want)
	}
}

// trailerOnly reports whether the chunks of wire are well formed and net/http refused only its
// trailer section, which the gateway skips line by line without parsing (it never forwards
// trailers): both agree where the message ends.
func trailerOnly(wire []byte) bool {
	br := bufio.NewReader(bytes.NewReader(wire))
	if _, err := io.ReadAll(httputil.NewChunkedReader(br)); err != nil {
		return false
	}
	rest, _ := io.ReadAll(br)
	for _, line := range bytes.SplitAfter(rest, []byte("\n")) {
		if bytes.Equal(line, []byte("\n")) || bytes.Equal(line, []byte("\r\n")) {
			return true // the empty line both take for the end of the message
		}
	}
	return false
}

func TestChunkedDecoderMatchesNetHTTP(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 4))
	for range 20000 {
		checkAgainstReference(t, chunkedCase(r))
	}
}

func FuzzChunkedDecoderMatchesNetHTTP(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("3;x=y\r\nabc\r\n2 \r\nde\r\n0\r\nTrailer: v\r\n\r\n"))
	f.Add([]byte("5\nhello\n0\n\n"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		if bytes.Count(wire, []byte(";")) > 8 || len(wire) > 4000 {
			return // net/http caps extension overhead; the gateway does not
		}
		checkAgainstReference(t, wire)
	})
}
