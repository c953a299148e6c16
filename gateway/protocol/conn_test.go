package protocol

import (
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
)

// feedConn is a net.Conn whose reads return the given pieces, one per Read.
type feedConn struct {
	net.Conn
	pieces []string
}

func (f *feedConn) Read(p []byte) (int, error) {
	if len(f.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.pieces[0])
	f.pieces[0] = f.pieces[0][n:]
	if f.pieces[0] == "" {
		f.pieces = f.pieces[1:]
	}
	return n, nil
}

// readAll reads c to its end and returns what was delivered and the error that ended it.
func readAll(c *Conn) (string, error) {
	var b strings.Builder
	buf := make([]byte, 7) // small, so heads straddle reads
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), err
		}
	}
}

func TestConnRefusesBareLF(t *testing.T) {
	tests := []struct {
		name, in string
		bad      bool
	}{
		{"crlf head", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"empty block", "GET / HTTP/1.0\r\n\r\n", false},
		{"leading empty lines", "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"body with LFs is not scanned", "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\n\n\n\n", false},
		{"request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", true},
		{"inside block", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", true},
		{"end of block lf lf", "GET / HTTP/1.1\nHost: a\n\n", true},
		{"end of block crlf lf", "GET / HTTP/1.1\r\nHost: a\r\n\n", true},
		{"end of block lf crlf", "GET / HTTP/1.1\r\nHost: a\n\r\n", true},
	}
	for _, tc := range tests {
		for _, split := range []bool{false, true} {
			pieces := []string{tc.in}
			if split { // one byte per read
				pieces = strings.Split(tc.in, "")
			}
			c := newConn(&feedConn{pieces: pieces})
			got, err := readAll(c)
			if tc.bad {
				if !errors.Is(err, ErrBareLF) || strings.Contains(got, "\n\n") || len(got) >= len(tc.in) {
					t.Errorf("%s (split %v): delivered %q, err %v; want the bytes before the bare LF, then ErrBareLF", tc.name, split, got, err)
				}
				continue
			}
			if err != io.EOF || got != tc.in {
				t.Errorf("%s (split %v): delivered %q, err %v", tc.name, split, got, err)
			}
		}
	}
}

// starts feeds in to a fresh Conn one byte per read and returns the offsets where request lines
// begin, the offset of a refused bare LF (-1 for none) and whether scanning stopped.
func starts(in string) (heads []int, refused int, stopped bool) {
	c := &Conn{}
	for i := range len(in) {
		before := c.state
		if c.scan([]byte{in[i]}) == 0 {
			return heads, i, false
		}
		if before == stSkip && c.state != stSkip {
			heads = append(heads, i)
		}
		if c.state == stStopped {
			return heads, -1, true
		}
	}
	return heads, -1, false
}

// TestConnFollowsFraming: where the scanner finds each head, for each way a body is framed. In
// the inputs, "»" marks where a request line must be found and "¦" a bare LF that must be
// refused; neither is part of the bytes fed.
func TestConnFollowsFraming(t *testing.T) {
	const get = "»GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	const chunked = "»POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	tests := []struct {
		name    string
		in      string
		stopped bool
	}{
		{"pipelined", get + get + get, false},
		{"content-length body with LFs and a fake head", "»POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\n\n\nGET / HTTP/1.1\n\n\r\n" + get, false},
		{"content-length case and whitespace", "»POST / HTTP/1.1\r\ncOnTeNt-LeNgTh:\t 3 \r\n\r\n\n\n\n" + get, false},
		{"get with a body", "»GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\n" + get, false},
		{"content-type is not content-length", "»POST / HTTP/1.1\r\nContent-Type: 5\r\nContent-Lengthy: 5\r\n\r\n" + get, false},
		{"zero length", "»POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + get, false},
		{"empty lines before a head", get + "\r\n\r\n" + get, false},
		{"chunked body, extensions, trailers",
			chunked + "3;a=b\r\n\n\n\n\r\n" + "A \t\r\nGET /\n\n\r\n\n\r\n" + "0\r\nX-T: 1\r\nY: 2\r\n\r\n" + get, false},
		{"chunked, upper-case hex, leading zeros", "»POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n00B\r\nhello\nworld\r\n0\r\n\r\n" + get, false},
		{"chunked wins over content-length", "»POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" + get, false},
		{"identity is no coding", "»POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\n\n" + get, false},
		{"bare LF ending a head after a chunked body", chunked + "2\r\n\n\n\r\n0\r\n\r\n»GET / HTTP/1.1\r\nHost: a\r\n¦\n", false},
		{"bare LF ending a pipelined head", get + "»GET / HTTP/1.1\r\n¦\n", false},
		{"bare LF in a pipelined request line", get + "»GET / HTTP/1.1¦\nHost: a\r\n\r\n", false},
		{"bare LF inside a pipelined header block", get + "»GET / HTTP/1.1\r\nHost: a¦\nX: b\r\n\r\n", false},
		{"bare LF in a chunk-size line", chunked + "2¦\n", false},
		{"bare LF in a chunk extension", chunked + "2;x¦\n", false},
		{"bare LF after chunk data", chunked + "2\r\nab¦\n", false},
		{"bare LF in a trailer", chunked + "0\r\nX: 1¦\n", false},
		{"bare LF ending the trailers", chunked + "0\r\n¦\n", false},
		{"bare LF after a content-length value", "»POST / HTTP/1.1\r\nContent-Length: 1¦\n\r\n", false},
		// Framing fasthttp refuses (400, connection closed): the scanner stops rather than guess.
		{"duplicate content-length", "»POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", true},
		{"non-numeric content-length", "»POST / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n", true},
		{"empty content-length", "»POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", true},
		{"content-length list", "»POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", true},
		{"unknown coding", "»POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true},
		{"two transfer-encodings", "»POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"folded content-length", "»POST / HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\n", true},
		{"too many hex digits", chunked + "0000000000000001\r\n", true},
		{"semicolon after whitespace", chunked + "1 ;x\r\n", true},
		{"no CRLF after chunk data", chunked + "1\r\nxy", true},
	}
	for _, tc := range tests {
		var in []byte
		var wantHeads []int
		wantRefused := -1
		for _, r := range tc.in {
			switch r {
			case '»':
				wantHeads = append(wantHeads, len(in))
			case '¦':
				wantRefused = len(in)
			default:
				in = append(in, byte(r))
			}
		}
		heads, refused, stopped := starts(string(in))
		if !slices.Equal(heads, wantHeads) || refused != wantRefused || stopped != tc.stopped {
			t.Errorf("%s: heads at %v, refused at %d, stopped %v; want %v, %d, %v", tc.name, heads, refused, stopped, wantHeads, wantRefused, tc.stopped)
		}
		// Whole, the same input gives the same answer.
		got, err := readAll(newConn(&feedConn{pieces: []string{string(in)}}))
		if wantRefused >= 0 {
			if !errors.Is(err, ErrBareLF) || got != string(in[:wantRefused]) {
				t.Errorf("%s, one read: delivered %d bytes, err %v; want %d, then ErrBareLF", tc.name, len(got), err, wantRefused)
			}
		} else if got != string(in) || err != io.EOF {
			t.Errorf("%s, one read: delivered %d of %d bytes, err %v", tc.name, len(got), len(in), err)
		}
	}
}

// TestConnUpgrade: after an upgrade request the next bytes may be another protocol. They are
// scanned as HTTP until the handler says; a refusal among them holds the rest back, and an
// upgrade delivers it untouched.
func TestConnUpgrade(t *testing.T) {
	head := "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	frames := "\x81\x8a\x00\x00\x00\x00a\nb\n\nc\r\n\n\n" + "\n\nGET / HTTP/1.1\n\n"
	for _, upgraded := range []bool{true, false} {
		for _, pieces := range [][]string{{head + frames}, {head, frames}} {
			c := newConn(&feedConn{pieces: append([]string(nil), pieces...)})
			buf := make([]byte, 4096)
			var got []byte
			for len(got) < len(head) {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("reading the upgrade request: %v", err)
				}
				got = append(got, buf[:n]...)
			}
			if upgraded {
				c.Upgraded()
			}
			rest, err := readAll(c)
			got = append(got, rest...)
			switch {
			case upgraded && (err != io.EOF || string(got) != head+frames):
				t.Errorf("upgraded (%d reads): delivered %q, err %v; want everything untouched", len(pieces), got, err)
			case !upgraded && (!errors.Is(err, ErrBareLF) || len(got) >= len(head+frames)):
				t.Errorf("not upgraded (%d reads): delivered %q, err %v; want ErrBareLF", len(pieces), got, err)
			}
		}
	}
}

func TestConnRequestLine(t *testing.T) {
	c := newConn(&feedConn{pieces: []string{"GET /" + strings.Repeat("a", 100), " HTTP/1.1\r\nX: " + strings.Repeat("b", 100)}})
	buf := make([]byte, 256)
	_, _ = c.Read(buf)
	if !c.InRequestLine() {
		t.Fatal("in the request line: InRequestLine false")
	}
	_, _ = c.Read(buf)
	if c.InRequestLine() {
		t.Fatal("in the header block: InRequestLine true")
	}
}

func TestSplitAbsoluteTarget(t *testing.T) {
	tests := []struct {
		in, authority, path, query string
		err                        error
	}{
		{"http://a.example/p?q=1", "a.example", "/p", "q=1", nil},
		{"HTTPS://a.example:8443", "a.example:8443", "/", "", nil},
		{"http://a.example?x", "a.example", "/", "x", nil},
		{"http://u@a.example/", "", "", "", ErrHostUserinfo},
		{"ftp://a.example/", "", "", "", ErrPathNotOrigin},
		{"http:///p", "", "", "", ErrPathNotOrigin},
		{"http://a.example/p#f", "", "", "", ErrPathBadChar},
	}
	for _, tc := range tests {
		a, p, q, err := SplitAbsoluteTarget([]byte(tc.in))
		if !errors.Is(err, tc.err) || string(a) != tc.authority || string(p) != tc.path || string(q) != tc.query {
			t.Errorf("%s: %q %q %q %v", tc.in, a, p, q, err)
		}
	}
}

func TestClassifyVersionAndExpect(t *testing.T) {
	for proto, want := range map[string]int{"HTTP/1.1": Version11, "HTTP/1.0": Version10, "HTTP/1.2": VersionUnsupported, "HTTP/2.0": VersionUnsupported, "HTTP/0.9": VersionUnsupported} {
		if got := ClassifyVersion([]byte(proto)); got != want {
			t.Errorf("%s: %d, want %d", proto, got, want)
		}
	}
	for value, other := range map[string]bool{"100-continue": false, "100-Continue": false, "foo": true, "100-continue, foo": true} {
		f, err := scan(t, "Expect: "+value+"\r\n\r\n")
		if err != nil || f.Has(HasExpectOther) != other {
			t.Errorf("Expect: %s: other %v, err %v", value, f.Has(HasExpectOther), err)
		}
	}
}

// FuzzConnSplitInvariant: how the bytes are split into reads never changes what the scanner
// delivers or whether it refuses.
func FuzzConnSplitInvariant(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\n\n", uint8(3))
	f.Add("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nbody\n\n", uint8(1))
	f.Add("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\n\n\n\n\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\n", uint8(5))
	f.Add("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\n\n\nGET / HTTP/1.1\r\nHost: a\n\r\n", uint8(2))
	f.Fuzz(func(t *testing.T, in string, step uint8) {
		whole, werr := readAll(newConn(&feedConn{pieces: []string{in}}))
		var pieces []string
		for s, k := in, int(step%16)+1; len(s) > 0; {
			n := min(k, len(s))
			pieces, s = append(pieces, s[:n]), s[n:]
		}
		split, serr := readAll(newConn(&feedConn{pieces: pieces}))
		if whole != split || errors.Is(werr, ErrBareLF) != errors.Is(serr, ErrBareLF) {
			t.Fatalf("whole: %q %v; split by %d: %q %v", whole, werr, step%16+1, split, serr)
		}
	})
}
