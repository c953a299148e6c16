package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

// TestLineMatchesSlog holds the hand-written encoder to the bytes log/slog's JSON handler wrote
// for the same request, the format anything parsing the access log was built against.
func TestLineMatchesSlog(t *testing.T) {
	now := time.Date(2026, 12, 5, 22, 43, 17, 123456789, time.FixedZone("CET", 3600))
	for name, e := range map[string]Entry{
		"plain": {RequestID: []byte("0af7651916cd43dd8448eb211c80319c"), ClientIP: netip.MustParseAddr("203.0.113.7"),
			Method: []byte("GET"), Path: []byte("/api/products/42"), Query: []byte("sort=price&token=abc"),
			Route: "products", Upstream: "products", Target: "127.0.0.1:3002", Status: 200, BytesIn: 0, BytesOut: 1093,
			Duration: 1234567 * time.Nanosecond, UpstreamTime: 987 * time.Microsecond, Attempts: 1,
			UserAgent: []byte("Mozilla/5.0 (X11; Linux x86_64)"), Referer: []byte("https://shop.example.com/"), Protocol: "HTTP/2"},
		"escapes": {RequestID: []byte("a\"b\\c"), ClientIP: netip.MustParseAddr("2001:db8::1"),
			Method: []byte("POST"), Path: []byte("/ümlaut/\x01\t\n\r"), Query: []byte("q=<script>&x=\xff\xfe"),
			UserAgent: []byte("bad\xc3 utf8 \u2028 \u2029 é 日本"), Referer: []byte("\x7f"), Status: 502,
			Duration: 3 * time.Second, Err: errors.New(`upstream "products" refused`)},
		"zero": {},
		"grpc error": {Method: []byte("POST"), Path: []byte("/grpc.testing.TestService/UnaryCall"), Status: 200,
			Protocol: "HTTP/2", GRPCStatus: 14, HasGRPCStatus: true, Err: errors.New("no target available")},
		"zone": {ClientIP: netip.MustParseAddr("fe80::1%eth\"0"), Duration: time.Hour + 1},
	} {
		t.Run(name, func(t *testing.T) {
			got := appendLine(nil, &e, now)
			var want bytes.Buffer
			slogLine(&want, &e, now)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("line differs from log/slog's\n got: %s\nwant: %s", got, want.Bytes())
			}
			if !json.Valid(bytes.TrimSpace(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// slogLine is how the access log was written before it had its own encoder.
func slogLine(w io.Writer, e *Entry, now time.Time) {
	q := oldRedactQuery(e.Query)
	attrs := []slog.Attr{
		slog.String("request_id", string(e.RequestID)),
		slog.String("client_ip", ipString(e.ClientIP)),
		slog.String("method", string(e.Method)),
		slog.String("path", string(e.Path)),
		slog.String("query", q),
		slog.String("route", e.Route),
		slog.String("upstream", e.Upstream),
		slog.String("target", e.Target),
		slog.Int("status", e.Status),
		slog.Int64("bytes_in", e.BytesIn),
		slog.Int64("bytes_out", e.BytesOut),
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		slog.Float64("upstream_ms", float64(e.UpstreamTime.Microseconds())/1000),
		slog.Int("attempts", e.Attempts),
		slog.String("user_agent", string(e.UserAgent)),
		slog.String("referer", string(e.Referer)),
		slog.String("protocol", e.Protocol),
	}
	if e.HasGRPCStatus {
		attrs = append(attrs, slog.Int("grpc_status", e.GRPCStatus))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	r.AddAttrs(attrs...)
	_ = slog.NewJSONHandler(w, nil).Handle(context.Background(), r)
}

// oldRedactQuery is the redaction the slog-based logger did, on strings.
func oldRedactQuery(q []byte) string {
	if len(q) == 0 {
		return ""
	}
	parts := strings.Split(string(q), "&")
	for i, p := range parts {
		name, _, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		for _, s := range sensitiveParams {
			if strings.EqualFold(name, string(s)) {
				parts[i] = name + "=[redacted]"
				break
			}
		}
	}
	return strings.Join(parts, "&")
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// TestConcurrentLinesAcrossClose logs from many goroutines through small buffers (so they
// rotate all the time) and closes the logger while they still log: every line that reaches the
// output is whole, valid JSON, appears once, and the lines written plus the lines counted as
// dropped are all the lines logged.
func TestConcurrentLinesAcrossClose(t *testing.T) {
	var out lockedBuffer
	l := New(&out, Options{Buffer: MinBuffer, Flush: time.Millisecond})
	const writers, perWriter = 8, 2000
	var wg sync.WaitGroup
	var halfway sync.WaitGroup
	halfway.Add(writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if i == perWriter/2 {
					halfway.Done()
				}
				id := []byte(fmt.Sprintf("w%d-%d", w, i))
				l.Log(&Entry{RequestID: id, Method: []byte("GET"), Path: []byte("/api/products"),
					UserAgent: bytes.Repeat([]byte("x"), i%300), Status: 200})
			}
		}()
	}
	halfway.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	afterClose := out.b.Len()

	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not one JSON object (%v): %q", len(seen)+1, err, sc.Bytes())
		}
		id, _ := m["request_id"].(string)
		if seen[id] {
			t.Fatalf("line %q written twice", id)
		}
		seen[id] = true
	}
	if !bytes.HasSuffix(out.b.Bytes(), []byte("\n")) {
		t.Error("output does not end with a whole line")
	}
	if got := uint64(len(seen)) + l.Dropped(); got != writers*perWriter {
		t.Errorf("%d lines written + %d dropped = %d, want %d", len(seen), l.Dropped(), got, writers*perWriter)
	}
	if len(seen) == 0 {
		t.Error("nothing written")
	}
	l.Log(&Entry{Status: 200})
	if out.b.Len() != afterClose {
		t.Error("a line logged after Close was written")
	}
}

// notifyWriter signals every write.
type notifyWriter struct {
	lockedBuffer
	wrote chan struct{}
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	defer func() { n.wrote <- struct{}{} }()
	return n.lockedBuffer.Write(p)
}

// TestQuietLoggerFlushesOnInterval: a line in a buffer that never fills still reaches the
// output, without Close, within the flush interval.
func TestQuietLoggerFlushesOnInterval(t *testing.T) {
	out := &notifyWriter{wrote: make(chan struct{}, 16)}
	l := New(out, Options{Flush: 5 * time.Millisecond})
	defer l.Close()
	l.Log(&Entry{RequestID: []byte("quiet"), Status: 204})
	select {
	case <-out.wrote:
	case <-time.After(time.Minute):
		t.Fatal("a line in a buffer that is not full was never written")
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if !bytes.Contains(out.b.Bytes(), []byte(`"request_id":"quiet"`)) {
		t.Errorf("output %q", out.b.String())
	}
}

// blockedWriter holds every write until release is closed.
type blockedWriter struct {
	lockedBuffer
	entered chan struct{}
	release chan struct{}
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.lockedBuffer.Write(p)
}

// TestSlowOutputDropsInsteadOfBlocking: with the writer stuck on the output, Log keeps
// returning (the test would hang otherwise), counts the lines it cannot keep, and the buffered
// ones are all written once the output moves again.
func TestSlowOutputDropsInsteadOfBlocking(t *testing.T) {
	out := &blockedWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	warnings := &lockedBuffer{}
	l := New(out, Options{Buffer: MinBuffer, Flush: time.Hour, Warn: slog.New(slog.NewTextHandler(warnings, nil))})
	line := len(appendLine(nil, &Entry{RequestID: []byte("000000"), Status: 200}, time.Now()))
	total := 10 * buffers * MinBuffer / line
	for i := range total {
		l.Log(&Entry{RequestID: fmt.Appendf(nil, "%06d", i), Status: 200})
	}
	<-out.entered // the writer holds one full buffer
	if l.Dropped() == 0 {
		t.Fatalf("%d lines through %d buffers of %d bytes and nothing dropped", total, buffers, MinBuffer)
	}
	close(out.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(out.b.Bytes(), []byte("\n"))
	if uint64(n)+l.Dropped() != uint64(total) {
		t.Errorf("%d written + %d dropped, want %d", n, l.Dropped(), total)
	}
	if n < (buffers-1)*MinBuffer/line {
		t.Errorf("only %d lines written: the buffers were not all used", n)
	}
	l.warn(0)
	if !bytes.Contains(warnings.b.Bytes(), []byte("access log lines dropped")) {
		t.Errorf("no warning about drops: %q", warnings.b.String())
	}
}

// TestOverlongLineIsDropped: a line longer than a buffer is counted, not split.
func TestOverlongLineIsDropped(t *testing.T) {
	var out lockedBuffer
	l := New(&out, Options{Buffer: MinBuffer})
	l.Log(&Entry{UserAgent: bytes.Repeat([]byte("a"), MinBuffer)})
	l.Log(&Entry{Status: 200})
	_ = l.Close()
	if l.Dropped() != 1 || bytes.Count(out.b.Bytes(), []byte("\n")) != 1 {
		t.Errorf("dropped %d, output %q", l.Dropped(), out.b.String())
	}
}

// BenchmarkLog is the request path's cost of one access log line: encoding and the copy into
// the shared buffer, serial and from every P at once.
func BenchmarkLog(b *testing.B) {
	e := &Entry{RequestID: []byte("0af7651916cd43dd8448eb211c80319c"), ClientIP: netip.MustParseAddr("203.0.113.7"),
		Method: []byte("GET"), Path: []byte("/api/products/42"), Query: []byte("sort=price"),
		Route: "products", Upstream: "products", Target: "127.0.0.1:3002", Status: 200, BytesOut: 1093,
		Duration: 1234 * time.Microsecond, UpstreamTime: 987 * time.Microsecond, Attempts: 1,
		UserAgent: []byte("Mozilla/5.0 (X11; Linux x86_64)")}
	l := New(io.Discard, Options{})
	defer l.Close()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.Log(e)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Log(e)
			}
		})
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriteErrorIsReported: a failing output is named in a warning, not silently ignored.
func TestWriteErrorIsReported(t *testing.T) {
	var warnings lockedBuffer
	l := New(failingWriter{}, Options{Flush: time.Hour, Warn: slog.New(slog.NewTextHandler(&warnings, nil))})
	l.Log(&Entry{Status: 200})
	_ = l.Close()
	l.warn(0)
	if !bytes.Contains(warnings.b.Bytes(), []byte("disk full")) {
		t.Errorf("warnings %q", warnings.b.String())
	}
}

// TestMatchesComparesEffectiveOptions: a reload keeps the logger only when output, buffer and
// flush all stay, zero values meaning the defaults.
func TestMatchesComparesEffectiveOptions(t *testing.T) {
	l := New(io.Discard, Options{})
	defer l.Close()
	for _, c := range []struct {
		output string
		o      Options
		want   bool
	}{
		{"writer", Options{}, true},
		{"writer", Options{Buffer: DefaultBuffer, Flush: DefaultFlush}, true},
		{"stdout", Options{}, false},
		{"writer", Options{Buffer: 2 * DefaultBuffer}, false},
		{"writer", Options{Flush: 5 * time.Second}, false},
	} {
		if got := l.Matches(c.output, c.o); got != c.want {
			t.Errorf("Matches(%q, %+v) = %v, want %v", c.output, c.o, got, c.want)
		}
	}
}

// TestDefaultsMatchConfig: the logger's defaults are routes.yaml's.
func TestDefaultsMatchConfig(t *testing.T) {
	if DefaultBuffer != config.DefaultAccessLogBuffer.Bytes() || DefaultFlush != config.DefaultAccessLogFlush.D() ||
		MinBuffer != config.MinAccessLogBuffer.Bytes() {
		t.Error("accesslog and config disagree on the access log's defaults")
	}
}
