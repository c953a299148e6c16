// Package accesslog writes one structured JSON line per request with log/slog: the fields of
// nginx's log_format with its rt/urt timings. When access logging is off the gateway holds no
// Logger at all, so the request path pays one nil check.
package accesslog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Entry is one request as logged. The caller fills it and passes it to Log; Log copies what it
// needs, so the Entry and the byte slices in it may be reused right after.
type Entry struct {
	RequestID    []byte
	ClientIP     string
	Method       []byte
	Path         []byte
	Query        []byte
	Route        string
	Upstream     string
	Target       string
	Status       int
	BytesIn      int64
	BytesOut     int64
	Duration     time.Duration // total time in the gateway (nginx $request_time)
	UpstreamTime time.Duration // time waiting on upstreams (nginx $upstream_response_time)
	Attempts     int
	UserAgent    []byte
	Referer      []byte
	Err          error
}

// Logger writes access log lines. Lines are buffered and flushed every flushEvery, at Close, and
// whenever the buffer fills. Safe for concurrent use.
type Logger struct {
	Output string
	log    *slog.Logger
	buf    *syncWriter
	file   *os.File // nil for stdout and stderr
	cancel context.CancelFunc
	done   chan struct{}
}

const flushEvery = 100 * time.Millisecond

// Open starts a logger writing to "stdout", "stderr" or a file path (appended to, created 0644).
func Open(output string) (*Logger, error) {
	var w io.Writer
	var file *os.File
	switch output {
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open access log: %w", err)
		}
		w, file = f, f
	}
	return newLogger(output, w, file), nil
}

// New starts a logger writing to w (tests).
func New(w io.Writer) *Logger { return newLogger("writer", w, nil) }

func newLogger(output string, w io.Writer, file *os.File) *Logger {
	sw := &syncWriter{w: bufio.NewWriterSize(w, 64<<10)}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Logger{
		Output: output,
		log:    slog.New(slog.NewJSONHandler(sw, &slog.HandlerOptions{})),
		buf:    sw, file: file, cancel: cancel, done: make(chan struct{}),
	}
	go l.flushLoop(ctx)
	return l
}

func (l *Logger) flushLoop(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			l.buf.flush()
			return
		case <-tick.C:
			l.buf.flush()
		}
	}
}

// Log writes one line.
func (l *Logger) Log(e *Entry) {
	attrs := make([]slog.Attr, 0, 17)
	attrs = append(attrs,
		slog.String("request_id", string(e.RequestID)),
		slog.String("client_ip", e.ClientIP),
		slog.String("method", string(e.Method)),
		slog.String("path", string(e.Path)),
		slog.String("query", redactQuery(e.Query)),
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
	)
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	l.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// Close flushes and stops the logger; it closes the file it opened.
func (l *Logger) Close() error {
	l.cancel()
	<-l.done
	if l.file != nil {
		return l.file.Close()
	}
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.w.Flush()
}

// sensitiveParams are query parameters whose values never reach the log: WebSocket clients
// authenticate with ?token=, and some clients put other credentials in URLs.
var sensitiveParams = []string{"token", "access_token", "id_token", "jwt", "password", "api_key", "apikey", "secret"}

// redactQuery replaces the values of sensitive parameters with "[redacted]".
func redactQuery(q []byte) string {
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
			if strings.EqualFold(name, s) {
				parts[i] = name + "=[redacted]"
				break
			}
		}
	}
	return strings.Join(parts, "&")
}
