package tracing

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/exportqueue"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// reply is one answer of a test collector: an HTTP status with headers and a body, or a gRPC
// response or status.
type reply struct {
	code    int
	header  map[string]string
	body    *coltracepb.ExportTraceServiceResponse
	grpcErr error
}

// answering serves a test collector's answers in order (200 or OK with an empty response once
// they run out) and counts the requests.
type answering struct {
	mu      sync.Mutex
	replies []reply
	calls   int
}

func (a *answering) next() reply {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if len(a.replies) == 0 {
		return reply{code: http.StatusOK}
	}
	r := a.replies[0]
	a.replies = a.replies[1:]
	return r
}

func (a *answering) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// startAnsweringHTTP is a net/http OTLP/HTTP collector on a loopback port that answers with
// replies.
func startAnsweringHTTP(t *testing.T, replies ...reply) (string, *answering) {
	t.Helper()
	a := &answering{replies: replies}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rp := a.next()
		for k, v := range rp.header {
			w.Header().Set(k, v)
		}
		var body []byte
		if rp.body != nil {
			body, _ = proto.Marshal(rp.body)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}
		w.WriteHeader(rp.code)
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), a
}

// answeringGRPC is a grpc-go OTLP/gRPC collector that answers with replies.
type answeringGRPC struct {
	coltracepb.UnimplementedTraceServiceServer
	*answering
}

func (g answeringGRPC) Export(context.Context, *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rp := g.next()
	if rp.grpcErr != nil {
		return nil, rp.grpcErr
	}
	if rp.body != nil {
		return rp.body, nil
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startAnsweringGRPC(t *testing.T, replies ...reply) (string, *answering) {
	t.Helper()
	a := &answering{replies: replies}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, answeringGRPC{answering: a})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String(), a
}

// pauses records the exporter's pauses between sends instead of taking them.
type pauses struct{ took []time.Duration }

func (p *pauses) sleep(_ context.Context, d time.Duration) error {
	p.took = append(p.took, d)
	return nil
}

func partial(rejected int64, msg string) *coltracepb.ExportTraceServiceResponse {
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: msg}}
}

func withRetryInfo(t *testing.T, code codes.Code, delay time.Duration) error {
	t.Helper()
	st, err := status.New(code, "come back later").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestPartialSuccessIsCountedAndLogged: over both transports, the spans a collector rejects in
// a partial success are counted as dropped for rejected (the rest as exported) and not sent
// again; what it said is logged once per interval, the next line counting the replies and
// spans it stands for; a warning that rejects nothing counts nothing.
func TestPartialSuccessIsCountedAndLogged(t *testing.T) {
	for _, proto := range []config.TracingProtocol{config.TracingHTTP, config.TracingGRPC} {
		t.Run(string(proto), func(t *testing.T) {
			replies := []reply{
				{code: http.StatusOK, body: partial(2, "2 spans too old")},
				{code: http.StatusOK, body: partial(3, "3 spans too big")},
				{code: http.StatusOK, body: partial(0, "service.name is deprecated")},
				{code: http.StatusOK, body: partial(1, "1 span too old")},
			}
			endpoint, a := startAnsweringHTTP(t, replies...)
			if proto == config.TracingGRPC {
				endpoint, a = startAnsweringGRPC(t, replies...)
			}
			e := testExporter(t, proto, endpoint, exportEnv{})
			var logged bytes.Buffer
			e.log = slog.New(slog.NewJSONHandler(&logged, nil))
			clock := time.Unix(1_800_000_000, 0)
			e.now = func() time.Time { return clock }
			var counts exportqueue.Counts
			q := exportqueue.NewWeighted(e, exportqueue.Settings{Size: 64, Batch: 64, Interval: time.Hour, ExportTimeout: 5 * time.Second},
				&counts, (*Span).spans)
			defer q.Shutdown(context.Background())
			export := func() {
				t.Helper()
				for _, s := range sampleRecords() { // 6 records, 7 spans
					q.Add(s)
				}
				if err := q.ForceFlush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			lines := func() []string { return strings.Split(strings.TrimSpace(logged.String()), "\n") }

			export()
			if r, x := counts.DroppedFor(exportqueue.DropRejected), counts.Exported(); r != 2 || x != 5 {
				t.Fatalf("after the first partial success: %d rejected, %d exported; want 2 and 5", r, x)
			}
			if l := lines(); len(l) != 1 || !strings.Contains(l[0], `"error_message":"2 spans too old"`) || !strings.Contains(l[0], `"rejected_spans":2`) {
				t.Fatalf("logged %q, want one line with the collector's message", logged.String())
			}
			export() // within the interval: counted, not logged
			export() // a warning: nothing rejected
			if r, x := counts.DroppedFor(exportqueue.DropRejected), counts.Exported(); r != 5 || x != 16 {
				t.Fatalf("after three replies: %d rejected, %d exported; want 5 and 16", r, x)
			}
			if l := lines(); len(l) != 1 {
				t.Fatalf("logged %d lines within one interval, want 1: %q", len(l), logged.String())
			}
			clock = clock.Add(partialLogEvery)
			export()
			l := lines()
			if len(l) != 2 || !strings.Contains(l[1], `"error_message":"1 span too old"`) || !strings.Contains(l[1], `"replies":3`) || !strings.Contains(l[1], `"rejected_spans":4`) {
				t.Fatalf("after the interval logged %q, want a second line for 3 replies and 4 spans", logged.String())
			}
			if n := a.count(); n != 4 {
				t.Fatalf("the collector got %d requests, want 4: a partial success is not sent again", n)
			}
			if counts.DroppedFor(exportqueue.DropExportFailed) != 0 {
				t.Fatal("a partial success counted as a failed export")
			}
		})
	}
}

// TestHTTPRetryAfter: 429, 502, 503 and 504 are sent again, after the pause Retry-After asks
// for (seconds or an HTTP date) or the backoff without one; a pause past the export timeout
// ends the export at once; other statuses are final.
func TestHTTPRetryAfter(t *testing.T) {
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	endpoint, a := startAnsweringHTTP(t,
		reply{code: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "7"}},
		reply{code: http.StatusTooManyRequests, header: map[string]string{"Retry-After": date}},
		reply{code: http.StatusBadGateway},
		reply{code: http.StatusGatewayTimeout, header: map[string]string{"Retry-After": "0"}},
	)
	e := testExporter(t, config.TracingHTTP, endpoint, exportEnv{})
	var p pauses
	e.sleep = p.sleep
	if err := e.Export(context.Background(), sampleRecords()); err != nil {
		t.Fatalf("after four retryable refusals: %v", err)
	}
	if a.count() != 5 || len(p.took) != 4 {
		t.Fatalf("%d requests and pauses %v, want 5 and 4 pauses", a.count(), p.took)
	}
	if p.took[0] != 7*time.Second || p.took[1] < 28*time.Second || p.took[1] > 31*time.Second ||
		p.took[2] != 400*time.Millisecond || p.took[3] != 0 {
		t.Fatalf("paused %v, want 7s, about 30s (the date), 400ms (the backoff of a third attempt) and 0", p.took)
	}

	far, fa := startAnsweringHTTP(t, reply{code: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "3600"}})
	e = testExporter(t, config.TracingHTTP, far, exportEnv{})
	p = pauses{}
	e.sleep = p.sleep
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Export(ctx, sampleRecords()); err == nil || !strings.Contains(err.Error(), "no time left") || len(p.took) != 0 || fa.count() != 1 {
		t.Fatalf("a Retry-After past the timeout gave %v after pauses %v and %d requests, want a final error at once", err, p.took, fa.count())
	}

	for _, code := range []int{http.StatusInternalServerError, http.StatusBadRequest, http.StatusUnauthorized} {
		final, fa := startAnsweringHTTP(t, reply{code: code, header: map[string]string{"Retry-After": "1"}})
		e = testExporter(t, config.TracingHTTP, final, exportEnv{})
		e.sleep = (&pauses{}).sleep
		var perm *permanentError
		if err := e.Export(context.Background(), sampleRecords()); !errors.As(err, &perm) || fa.count() != 1 {
			t.Errorf("%d gave %v after %d requests, want a final error at once", code, err, fa.count())
		}
	}
}

// TestGRPCRetryCodes: the codes OTLP/gRPC retries are sent again, after RetryInfo's delay when
// the status carries one; RESOURCE_EXHAUSTED only with RetryInfo; the others are final.
func TestGRPCRetryCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss} {
		endpoint, a := startAnsweringGRPC(t, reply{grpcErr: status.Error(code, "not now")})
		e := testExporter(t, config.TracingGRPC, endpoint, exportEnv{})
		var p pauses
		e.sleep = p.sleep
		if err := e.Export(context.Background(), sampleRecords()); err != nil || a.count() != 2 || len(p.took) != 1 || p.took[0] != 100*time.Millisecond {
			t.Errorf("%v: %v after %d calls and pauses %v, want sent again after the backoff", code, err, a.count(), p.took)
		}
	}

	endpoint, a := startAnsweringGRPC(t,
		reply{grpcErr: withRetryInfo(t, codes.ResourceExhausted, 3*time.Second)},
		reply{grpcErr: withRetryInfo(t, codes.Unavailable, 1500*time.Millisecond)},
	)
	e := testExporter(t, config.TracingGRPC, endpoint, exportEnv{})
	var p pauses
	e.sleep = p.sleep
	if err := e.Export(context.Background(), sampleRecords()); err != nil || a.count() != 3 {
		t.Fatalf("RESOURCE_EXHAUSTED and UNAVAILABLE with RetryInfo: %v after %d calls, want sent a third time", err, a.count())
	}
	if len(p.took) != 2 || p.took[0] != 3*time.Second || p.took[1] != 1500*time.Millisecond {
		t.Fatalf("paused %v, want RetryInfo's 3s and 1.5s", p.took)
	}

	for _, code := range []codes.Code{codes.ResourceExhausted, codes.InvalidArgument, codes.Unauthenticated, codes.Internal} {
		endpoint, a := startAnsweringGRPC(t, reply{grpcErr: status.Error(code, "no")})
		e := testExporter(t, config.TracingGRPC, endpoint, exportEnv{})
		e.sleep = (&pauses{}).sleep
		var perm *permanentError
		if err := e.Export(context.Background(), sampleRecords()); !errors.As(err, &perm) || a.count() != 1 {
			t.Errorf("%v without RetryInfo gave %v after %d calls, want a final error at once", code, err, a.count())
		}
	}
}

// TestParsePartialSuccess reads what protobuf's own marshalling writes, skipping unknown
// fields, and refuses what does not decode.
func TestParsePartialSuccess(t *testing.T) {
	for _, m := range []*coltracepb.ExportTraceServiceResponse{
		{}, partial(0, ""), partial(7, ""), partial(0, "warning"), partial(1<<40, strings.Repeat("x", 300)), partial(-1, "negative"),
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, 0x1a, 2, 'h', 'i') // an unknown field 3: skipped
		rejected, msg, err := parsePartialSuccess(b)
		if err != nil || rejected != m.GetPartialSuccess().GetRejectedSpans() || msg != m.GetPartialSuccess().GetErrorMessage() {
			t.Errorf("%v: %d %q %v", m, rejected, msg, err)
		}
	}
	if _, _, err := parsePartialSuccess([]byte{0x0a, 5, 0x08}); err == nil {
		t.Error("a truncated reply decoded")
	}
}

// FuzzParsePartialSuccess holds the reader to protobuf's: what proto.Unmarshal accepts it reads
// the same, and nothing panics.
func FuzzParsePartialSuccess(f *testing.F) {
	for _, m := range []*coltracepb.ExportTraceServiceResponse{{}, partial(3, "too old"), partial(-5, "")} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rejected, msg, err := parsePartialSuccess(b)
		var m coltracepb.ExportTraceServiceResponse
		if proto.Unmarshal(b, &m) != nil {
			return // protobuf refuses it; ours may read it or not, only without a panic
		}
		if err != nil {
			t.Fatalf("%x: protobuf reads it, ours says %v", b, err)
		}
		if rejected != m.GetPartialSuccess().GetRejectedSpans() || msg != m.GetPartialSuccess().GetErrorMessage() {
			t.Fatalf("%x: ours %d %q, protobuf's %d %q", b, rejected, msg, m.GetPartialSuccess().GetRejectedSpans(), m.GetPartialSuccess().GetErrorMessage())
		}
	})
}

// TestRetryAfter reads both forms of the header.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false}, {"5", 5 * time.Second, true}, {" 120 ", 2 * time.Minute, true}, {"0", 0, true},
		{"99999999999999999", maxRetryAfter * time.Second, true},
		{"Sun, 06 Dec 2026 10:00:42 GMT", 42 * time.Second, true},
		{"Sun, 06 Dec 2026 09:00:00 GMT", 0, true}, // past
		{"-3", 0, false}, {"soon", 0, false}, {"1.5", 0, false},
	} {
		if got, ok := retryAfter(tc.in, now); got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
