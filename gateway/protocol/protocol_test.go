package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in, want string
		reject   bool
		err      error
	}{
		{in: "/", want: "/"},
		{in: "/api/products", want: "/api/products"},
		{in: "/api/products/", want: "/api/products/"},
		{in: "//api///products", want: "/api/products"},
		{in: "/api/./products", want: "/api/products"},
		{in: "/api/x/../products", want: "/api/products"},
		{in: "/api/products/.", want: "/api/products/"},
		{in: "/api/products/..", want: "/api/"},
		{in: "/../../etc/passwd", want: "/etc/passwd"},
		{in: "/..", want: "/"},
		{in: "/.", want: "/"},
		{in: "/a/b/c/../../d", want: "/a/d"},
		{in: "/%61pi/%7Eme", want: "/api/~me"},
		{in: "/api/%2e%2e/admin", want: "/admin"},
		{in: "/api/%2E/x", want: "/api/x"},
		{in: "/a%2fb", want: "/a%2Fb"},
		{in: "/a%2Fb/../c", want: "/c"},
		{in: "/a/b%2F..%2Fc", want: "/a/b%2F..%2Fc"},
		{in: "/caf%c3%a9", want: "/caf%C3%A9"},
		{in: "/a%20b", want: "/a%20b"},
		{in: "/p;v=1/q:r@s!$&'()*+,=", want: "/p;v=1/q:r@s!$&'()*+,="},
		{in: "/a%2Fb", reject: true, err: ErrPathEncodedSlash},
		{in: "/a%00b", err: ErrPathEncodedNUL},
		{in: "/a%zzb", err: ErrPathBadEscape},
		{in: "/a%2", err: ErrPathBadEscape},
		{in: "/a%", err: ErrPathBadEscape},
		{in: "/a b", err: ErrPathBadChar},
		{in: "/a\\b", err: ErrPathBadChar},
		{in: "/a\"b", err: ErrPathBadChar},
		{in: "/caf\xc3\xa9", err: ErrPathBadChar},
		{in: "/a\x00", err: ErrPathBadChar},
		{in: "api", err: ErrPathNotOrigin},
		{in: "", err: ErrPathNotOrigin},
	}
	for _, tc := range tests {
		got, err := NormalizePath(nil, []byte(tc.in), tc.reject)
		if !errors.Is(err, tc.err) {
			t.Errorf("NormalizePath(%q) error = %v, want %v", tc.in, err, tc.err)
			continue
		}
		if tc.err == nil && string(got) != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizePathAppends(t *testing.T) {
	dst := make([]byte, 0, 256)
	dst = append(dst, "prefix:"...)
	got, err := NormalizePath(dst, []byte("/a//b/./c/../d%7e"), false)
	if err != nil || string(got) != "prefix:/a/b/d~" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// checkNormalForm verifies the properties every normalised path has.
func checkNormalForm(t *testing.T, in, out []byte) {
	t.Helper()
	if len(out) == 0 || out[0] != '/' {
		t.Fatalf("NormalizePath(%q) = %q: does not start with /", in, out)
	}
	if bytes.Contains(out, []byte("//")) {
		t.Fatalf("NormalizePath(%q) = %q: contains //", in, out)
	}
	for _, seg := range bytes.Split(out[1:], []byte("/")) {
		if string(seg) == "." || string(seg) == ".." {
			t.Fatalf("NormalizePath(%q) = %q: dot segment left", in, out)
		}
	}
	again, err := NormalizePath(nil, out, false)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("NormalizePath is not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x//", "/%2e%2E/", "/a%2Fb", "/%zz", "/a/./b/.", "/%C3%A9"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, rejectEncodedSlash bool) {
		out, err := NormalizePath(nil, raw, rejectEncodedSlash)
		if err != nil {
			return
		}
		checkNormalForm(t, raw, out)
		if rejectEncodedSlash && bytes.Contains(bytes.ToUpper(out), []byte("%2F")) {
			t.Fatalf("%q kept an encoded slash under reject", raw)
		}
	})
}

func scan(t *testing.T, block string) (*HeaderFacts, error) {
	t.Helper()
	var f HeaderFacts
	err := ScanHeaders([]byte(block), &f)
	return &f, err
}

func TestScanHeadersRefuses(t *testing.T) {
	tests := []struct {
		name, block string
		want        error
	}{
		{"cl and te", "Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrFramingConflict},
		{"te identity", "Host: a\r\nTransfer-Encoding: identity\r\n\r\n", ErrTransferEncoding},
		{"te gzip chunked", "Host: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ErrTransferEncoding},
		{"two te fields", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTransferEncoding},
		{"underscore", "Host: a\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n", ErrHeaderUnderscore},
		{"space in name", "Host: a\r\nBad Name: x\r\n\r\n", ErrHeaderName},
		{"space before colon", "Host: a\r\nX-A : x\r\n\r\n", ErrHeaderName},
		{"obs fold", "Host: a\r\nX-A: x\r\n  continued\r\n\r\n", ErrObsFold},
		{"no colon", "Host: a\r\nnocolon\r\n\r\n", ErrHeaderSyntax},
		{"empty name", "Host: a\r\n: x\r\n\r\n", ErrHeaderSyntax},
		{"userinfo", "Host: user:pw@example.com\r\n\r\n", ErrHostUserinfo},
		{"nine xff", strings.Repeat("X-Forwarded-For: 1.1.1.1\r\n", 9) + "\r\n", ErrTooManyHopFields},
		{"five proxy", strings.Repeat("Proxy-X: 1\r\n", 5) + "\r\n", ErrTooManyHopFields},
		{"bare lf inside", "Host: a\nX-A: b\r\n\r\n", ErrBareLF},
		{"bare lf at the end", "Host: a\r\n\n", ErrBareLF},
	}
	for _, tc := range tests {
		if _, err := scan(t, tc.block); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestScanHeadersNotes(t *testing.T) {
	block := "Host: example.com\r\n" +
		"Connection: keep-alive, X-Secret\r\n" +
		"connection: Upgrade\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy: http://evil\r\n" +
		"Proxy-Authorization: Basic x\r\n" +
		"TE: trailers\r\n" +
		"Upgrade: websocket\r\n" +
		"X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n" +
		"x-forwarded-for:3.3.3.3 \r\n" +
		"X-Forwarded-Host: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /p\r\n" +
		"X-Real-IP: 9.9.9.9\r\nForwarded: for=1.1.1.1\r\n" +
		"X-Request-ID: abc-123\r\nX-Request-Id: second\r\n" +
		"Expect: 100-continue\r\nTrailer: X\r\nContent-Length: 3\r\n\r\n"
	raw := []byte(block)
	var f HeaderFacts
	if err := ScanHeaders(raw, &f); err != nil {
		t.Fatal(err)
	}
	for _, bit := range []uint32{HasConnection, HasKeepAlive, HasProxyFields, HasTE, HasUpgrade,
		HasXForwardedFor, HasXForwardedHost, HasXForwardedProto, HasXForwardedPort, HasXForwardedPrefix,
		HasXRealIP, HasForwarded, HasXRequestID, HasExpect, HasTrailer, HasContentLength} {
		if !f.Has(bit) {
			t.Errorf("bit %#x not noted", bit)
		}
	}
	if f.Has(HasTransferEncoding) {
		t.Error("Transfer-Encoding noted but absent")
	}
	var xff []string
	for _, s := range f.ForwardedFor[:f.NForwardedFor] {
		xff = append(xff, string(s.Of(raw)))
	}
	if got := strings.Join(xff, "|"); got != "1.1.1.1, 2.2.2.2|3.3.3.3" {
		t.Errorf("X-Forwarded-For values = %q", got)
	}
	var conn []string
	for _, s := range f.Connection[:f.NConnection] {
		conn = append(conn, string(s.Of(raw)))
	}
	if got := strings.Join(conn, "|"); got != "keep-alive, X-Secret|Upgrade" {
		t.Errorf("Connection values = %q", got)
	}
	var proxy []string
	for _, s := range f.ProxyNames[:f.NProxyNames] {
		proxy = append(proxy, string(s.Of(raw)))
	}
	if got := strings.Join(proxy, "|"); got != "Proxy|Proxy-Authorization" {
		t.Errorf("Proxy field names = %q", got)
	}
	if got := string(f.RequestID.Of(raw)); got != "abc-123" {
		t.Errorf("X-Request-ID = %q, want the first one", got)
	}
}

func FuzzScanHeaders(f *testing.F) {
	f.Add([]byte("Host: a\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("Host: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("X: y\n z\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var facts HeaderFacts
		err := ScanHeaders(raw, &facts)
		spans := append([]Span{facts.RequestID}, facts.ForwardedFor[:min(facts.NForwardedFor, MaxForwardedForFields)]...)
		spans = append(spans, facts.Connection[:facts.NConnection]...)
		spans = append(spans, facts.ProxyNames[:facts.NProxyNames]...)
		for _, s := range spans {
			if s.Start < 0 || s.End < s.Start || int(s.End) > len(raw) {
				t.Fatalf("span %v out of range for %d bytes", s, len(raw))
			}
		}
		if err != nil {
			return
		}
		// Whatever was accepted has token names without '_' on every line before the blank one.
		for _, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if line == "" {
				break
			}
			name, _, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, "_ \t\"(),/;<=>?@[\\]{}") {
				t.Fatalf("accepted bad line %q", line)
			}
		}
	})
}

func TestSplitTargetAndMethods(t *testing.T) {
	for _, tc := range []struct {
		target, path, query string
		err                 error
	}{
		{"/a?b=1&c", "/a", "b=1&c", nil},
		{"/a", "/a", "", nil},
		{"/a?", "/a", "", nil},
		{"http://evil/a", "", "", ErrPathNotOrigin},
		{"*", "", "", ErrPathNotOrigin},
		{"example.com:443", "", "", ErrPathNotOrigin},
		{"/a#frag", "", "", ErrPathBadChar},
	} {
		p, q, err := SplitTarget([]byte(tc.target))
		if !errors.Is(err, tc.err) || string(p) != tc.path || string(q) != tc.query {
			t.Errorf("SplitTarget(%q) = %q, %q, %v", tc.target, p, q, err)
		}
	}
	for m, want := range map[string]int{"GET": MethodStandard, "OPTIONS": MethodStandard, "PATCH": MethodStandard,
		"TRACE": MethodRefused, "CONNECT": MethodRefused, "get": MethodExtension, "PROPFIND": MethodExtension,
		"M-SEARCH": MethodExtension, "BAD(": MethodUnknown, "": MethodUnknown} {
		if got := ClassifyMethod([]byte(m)); got != want {
			t.Errorf("ClassifyMethod(%s) = %d, want %d", m, got, want)
		}
	}
	for i, m := range Methods {
		if MethodIndex([]byte(m)) != i {
			t.Errorf("MethodIndex(%s) != %d", m, i)
		}
	}
}
