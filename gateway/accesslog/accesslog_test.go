package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestOneJSONLinePerRequestFlushedOnClose(t *testing.T) {
	var out lockedBuffer
	l := New(&out, Options{})
	l.Log(&Entry{RequestID: []byte("id-1"), ClientIP: netip.MustParseAddr("203.0.113.7"), Method: []byte("GET"), Path: []byte("/api/products"),
		Query: []byte("page=2"), Route: "products", Upstream: "products", Target: "127.0.0.1:3002", Status: 200,
		BytesOut: 512, Duration: 1500 * time.Microsecond, UpstreamTime: time.Millisecond, Attempts: 1})
	l.Log(&Entry{Method: []byte("GET"), Path: []byte("/nope"), Status: 404, Err: errors.New("no route matches this request")})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(out.b.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out.b.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(lines[1], &second)
	for k, want := range map[string]any{"msg": "request", "request_id": "id-1", "client_ip": "203.0.113.7", "path": "/api/products",
		"query": "page=2", "route": "products", "target": "127.0.0.1:3002", "status": 200.0, "duration_ms": 1.5, "upstream_ms": 1.0} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["error"]; ok {
		t.Error("a successful request logged an error field")
	}
	if second["error"] != "no route matches this request" || second["status"] != 404.0 {
		t.Errorf("second line %v", second)
	}
}

func TestSensitiveQueryValuesAreRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"token=eyJhbGci.x.y":               "token=[redacted]",
		"page=2&Access_Token=abc&sort=asc": "page=2&Access_Token=[redacted]&sort=asc",
		"q=tokens&tokenize=1":              "q=tokens&tokenize=1",
		"":                                 "",
		"flag&password=hunter2":            "flag&password=[redacted]",
		"a=1&":                             "a=1&",
		"&secret=x&&b":                     "&secret=[redacted]&&b",
		`q="x"`:                            `q=\"x\"`,
	} {
		if got := string(appendQuery(nil, []byte(in))); got != `"`+want+`"` {
			t.Errorf("appendQuery(%q) = %s, want %q", in, got, want)
		}
	}
}
