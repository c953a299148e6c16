package protocol

import (
	"errors"
	"io"
	"net"
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
			c := &Conn{Conn: &feedConn{pieces: pieces}}
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

func TestConnFollowsKeepAlive(t *testing.T) {
	// The first request's head and part of its 6-byte body, then the rest of the body together
	// with the next head, which ends in a bare LF.
	c := &Conn{Conn: &feedConn{pieces: []string{
		"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\na\n",
		"\nb\n\nGET / HTTP/1.1\r\nHost: a\r\n\n",
	}}}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil || c.InRequestLine() {
		t.Fatalf("first read: %d %v", n, err)
	}
	c.RequestDone(6, false)
	n, err = c.Read(buf)
	if err != nil || string(buf[:n]) != "\nb\n\nGET / HTTP/1.1\r\nHost: a\r\n" {
		t.Fatalf("second read: %q %v", buf[:n], err)
	}
	if _, err := c.Read(buf); !errors.Is(err, ErrBareLF) {
		t.Fatalf("after the bare LF: %v, want ErrBareLF", err)
	}

	// Pipelined: the next head came with the first; the scanner cannot know where it starts
	// and stops rather than scan what may be a body.
	c = &Conn{Conn: &feedConn{pieces: []string{"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", "x\n\n"}}}
	_, _ = c.Read(buf)
	c.RequestDone(0, false)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "x\n\n" {
		t.Fatalf("after pipelined requests: %q %v", buf[:n], err)
	}

	// Upgraded: what follows is another protocol.
	c = &Conn{Conn: &feedConn{pieces: []string{"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", "\n\n"}}}
	_, _ = c.Read(buf)
	c.RequestDone(0, true)
	if n, err := c.Read(buf); err != nil || n != 2 {
		t.Fatalf("after an upgrade: %d %v", n, err)
	}
}

func TestConnRequestLine(t *testing.T) {
	c := &Conn{Conn: &feedConn{pieces: []string{"GET /" + strings.Repeat("a", 100), " HTTP/1.1\r\nX: " + strings.Repeat("b", 100)}}}
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
	f.Fuzz(func(t *testing.T, in string, step uint8) {
		whole, werr := readAll(&Conn{Conn: &feedConn{pieces: []string{in}}})
		var pieces []string
		for s, k := in, int(step%16)+1; len(s) > 0; {
			n := min(k, len(s))
			pieces, s = append(pieces, s[:n]), s[n:]
		}
		split, serr := readAll(&Conn{Conn: &feedConn{pieces: pieces}})
		if whole != split || errors.Is(werr, ErrBareLF) != errors.Is(serr, ErrBareLF) {
			t.Fatalf("whole: %q %v; split by %d: %q %v", whole, werr, step%16+1, split, serr)
		}
	})
}
