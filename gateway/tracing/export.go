package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/exportqueue"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor OTEL_EXPORTER_OTLP_COMPRESSION may name
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// exporter is the export queue's exporter of span records: it encodes a batch once (otlp.go),
// returns the records to the free list, and sends the bytes over the configured transport, again
// after a pause while the collector is unreachable or answers with a retryable refusal (the
// pause the collector asks for when it says one), until the export timeout ends. It reads the
// collector's reply: spans it rejected (OTLP's partial success) are counted as dropped, and what
// it said is logged, at most once per logEvery.
//
// Export is called by the queue's goroutine only; Shutdown once, after the last Export.
type exporter struct {
	enc  encoder
	send transport
	body []byte

	log      *slog.Logger
	endpoint string
	// sleep waits d or until ctx ends (a field so tests see the pauses without taking them).
	sleep func(ctx context.Context, d time.Duration) error
	// The partial successes since the last line logged: how many replies, how many spans
	// they rejected, the last message. now is the clock of logEvery.
	logEvery     time.Duration
	lastLog      time.Time
	partials     int
	partialSpans int64
	now          func() time.Time
}

var _ exportqueue.Exporter[*Span] = (*exporter)(nil)

// partialLogEvery is how often at most the exporter logs what a collector said in partial
// successes: a collector that refuses part of every batch must not flood the log, and the
// count of what it refused is in archway_tracing_spans_dropped_total{reason="rejected"}.
const partialLogEvery = time.Minute

// transport delivers one encoded ExportTraceServiceRequest and returns the collector's reply
// (an encoded ExportTraceServiceResponse; empty when it sent none). retained reports that the
// transport may still read body after send returned (a request abandoned mid-write): the
// exporter then leaves that buffer to it and takes a new one. The reply is read before the next
// send.
type transport interface {
	send(ctx context.Context, body []byte) (reply []byte, retained bool, err error)
	close()
}

// permanentError is a failure that sending again cannot change: a refusal the protocol calls
// final, or a request that cannot be made.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// throttledError is a retryable refusal that says when to send again: OTLP/HTTP's Retry-After,
// OTLP/gRPC's RetryInfo.
type throttledError struct {
	err   error
	delay time.Duration
}

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// Export implements exportqueue.Exporter.
func (e *exporter) Export(ctx context.Context, spans []*Span) error {
	if len(spans) == 0 {
		return nil
	}
	e.body = e.enc.appendRequest(e.body[:0], spans)
	for _, s := range spans {
		s.release()
	}
	body := e.body
	wait := 100 * time.Millisecond
	for {
		// Sent again as it is (nobody writes a buffer a transport retained; the next batch
		// gets a new one).
		reply, retained, err := e.send.send(ctx, body)
		if retained {
			e.body = nil
		}
		if err == nil {
			return e.answered(reply)
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return err
		}
		pause := wait
		var throttled *throttledError
		if errors.As(err, &throttled) {
			pause = throttled.delay // the collector's own word, over the backoff
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
			return fmt.Errorf("otlp export: no time left to send again after %v (export_timeout): %w", pause, err)
		}
		if serr := e.sleep(ctx, pause); serr != nil {
			return fmt.Errorf("otlp export: %w (last error: %w)", serr, err)
		}
		wait = min(2*wait, time.Second)
	}
}

// answered reads the reply of an export the collector took: a partial success counts the spans
// it rejected as dropped (through the queue) and logs what it said. A reply that does not
// decode is not the batch's failure (the collector took it), only logged.
func (e *exporter) answered(reply []byte) error {
	rejected, msg, err := parsePartialSuccess(reply)
	if err != nil {
		e.notePartial(0, "the reply does not decode: "+err.Error())
		return nil
	}
	if rejected == 0 && msg == "" {
		return nil
	}
	e.notePartial(rejected, msg)
	if rejected <= 0 {
		return nil // a warning with every span accepted
	}
	if msg == "" {
		msg = "no reason given"
	}
	return &exportqueue.RejectedError{Rejected: uint64(rejected),
		Err: fmt.Errorf("otlp export: the collector rejected %d spans: %s", rejected, msg)}
}

// notePartial counts a partial success and logs it unless a line was logged less than logEvery
// ago; the next line says how many replies and spans it stands for.
func (e *exporter) notePartial(rejected int64, msg string) {
	e.partials++
	e.partialSpans += max(0, rejected)
	now := e.now()
	if !e.lastLog.IsZero() && now.Sub(e.lastLog) < e.logEvery {
		return
	}
	e.log.Warn("trace collector: partial success", "endpoint", e.endpoint, "error_message", msg,
		"rejected_spans", e.partialSpans, "replies", e.partials)
	e.lastLog, e.partials, e.partialSpans = now, 0, 0
}

// parsePartialSuccess reads an ExportTraceServiceResponse: the partial_success's rejected_spans
// and error_message; 0 and "" for an empty reply or one without it. Unknown fields are skipped,
// as protobuf's rules say.
func parsePartialSuccess(b []byte) (rejected int64, msg string, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		b = b[n:]
		if num != fResponsePartialSuccess || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, "", protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, "", protowire.ParseError(n)
		}
		b = b[n:]
		// A message field seen twice merges: later scalars win.
		for len(m) > 0 {
			num, typ, n := protowire.ConsumeTag(m)
			if n < 0 {
				return 0, "", protowire.ParseError(n)
			}
			m = m[n:]
			switch {
			case num == fPartialRejectedSpans && typ == protowire.VarintType:
				v, n := protowire.ConsumeVarint(m)
				if n < 0 {
					return 0, "", protowire.ParseError(n)
				}
				rejected, m = int64(v), m[n:]
			case num == fPartialErrorMessage && typ == protowire.BytesType:
				v, n := protowire.ConsumeBytes(m)
				if n < 0 {
					return 0, "", protowire.ParseError(n)
				}
				msg, m = string(v), m[n:]
			default:
				if n = protowire.ConsumeFieldValue(num, typ, m); n < 0 {
					return 0, "", protowire.ParseError(n)
				}
				m = m[n:]
			}
		}
	}
	return rejected, msg, nil
}

// The fields of ExportTraceServiceResponse and ExportTracePartialSuccess.
const (
	fResponsePartialSuccess = 1
	fPartialRejectedSpans   = 1
	fPartialErrorMessage    = 2
)

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Shutdown implements exportqueue.Exporter.
func (e *exporter) Shutdown(context.Context) error {
	e.send.close()
	return nil
}

// exportEnv is what the OpenTelemetry exporter variables add to server.tracing: the SDK's
// exporters read them, and the gateway's transports honour them alike.
type exportEnv struct {
	headers [][2]string
	gzip    bool
	tls     *tls.Config // nil: the system's roots, no client certificate
}

// readExportEnv reads OTEL_EXPORTER_OTLP_{TRACES_,}HEADERS, _COMPRESSION, _CERTIFICATE,
// _CLIENT_CERTIFICATE and _CLIENT_KEY, the traces variable first, as the specification
// defines them. Endpoint, protocol and timeout come from server.tracing.
func readExportEnv(get func(string) string) (exportEnv, error) {
	var env exportEnv
	read := func(name string) (string, string) {
		if v := get("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v, "OTEL_EXPORTER_OTLP_TRACES_" + name
		}
		return get("OTEL_EXPORTER_OTLP_" + name), "OTEL_EXPORTER_OTLP_" + name
	}
	if v, name := read("HEADERS"); v != "" {
		for pair := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return env, fmt.Errorf("%s: %q is not key=value", name, pair)
			}
			unescaped, err := url.PathUnescape(val)
			if err != nil {
				return env, fmt.Errorf("%s: the value of %s: %w", name, k, err)
			}
			env.headers = append(env.headers, [2]string{k, strings.TrimSpace(unescaped)})
		}
	}
	switch v, name := read("COMPRESSION"); v {
	case "", "none":
	case "gzip":
		env.gzip = true
	default:
		return env, fmt.Errorf("%s: %q is not gzip or none", name, v)
	}
	ca, caName := read("CERTIFICATE")
	cert, _ := read("CLIENT_CERTIFICATE")
	key, _ := read("CLIENT_KEY")
	if ca != "" || cert != "" || key != "" {
		env.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return env, fmt.Errorf("%s: %w", caName, err)
		}
		env.tls.RootCAs = x509.NewCertPool()
		if !env.tls.RootCAs.AppendCertsFromPEM(pem) {
			return env, fmt.Errorf("%s: no PEM certificate in %s", caName, ca)
		}
	}
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return env, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY: %w", err)
		}
		env.tls.Certificates = []tls.Certificate{pair}
	}
	return env, nil
}

// newExporter builds the exporter of cfg: OTLP/HTTP or OTLP/gRPC to cfg.Endpoint (http://
// without TLS, https:// with it), each send bounded by the queue's export timeout.
func newExporter(cfg *config.Tracing, env exportEnv) (*exporter, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tracing endpoint: %w", err)
	}
	e := &exporter{enc: newEncoder(cfg.ServiceName), log: slog.Default(), endpoint: cfg.Endpoint, sleep: sleepCtx,
		logEvery: partialLogEvery, now: time.Now}
	switch cfg.Protocol {
	case config.TracingGRPC:
		e.send, err = newGRPCTransport(u, env)
		if err != nil {
			return nil, err
		}
	default:
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		e.send = newHTTPTransport(u.String(), cfg.ExportTimeout.D(), env)
	}
	return e, nil
}

// httpTransport POSTs the request as application/x-protobuf (OTLP/HTTP).
type httpTransport struct {
	url     string
	client  *http.Client
	headers [][2]string
	gzip    *gzip.Writer // nil: no compression
	zbuf    bytes.Buffer // the compressed body, reused
	reply   bytes.Buffer // the last answer's body, reused
}

// maxReply bounds what is read of a collector's answer: an ExportTraceServiceResponse is a
// count and a message.
const maxReply = 64 << 10

func newHTTPTransport(url string, timeout time.Duration, env exportEnv) *httpTransport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	if env.tls != nil {
		tr.TLSClientConfig = env.tls
	}
	h := &httpTransport{url: url, client: &http.Client{Transport: tr, Timeout: timeout}, headers: env.headers}
	if env.gzip {
		h.gzip = gzip.NewWriter(io.Discard)
	}
	return h
}

// retryableHTTP are the answers OTLP/HTTP says to send again (the specification's list).
func retryableHTTP(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func (h *httpTransport) send(ctx context.Context, body []byte) ([]byte, bool, error) {
	sent := body
	if h.gzip != nil {
		h.zbuf.Reset()
		h.gzip.Reset(&h.zbuf)
		_, _ = h.gzip.Write(body) // writes to a bytes.Buffer do not fail
		_ = h.gzip.Close()
		sent = h.zbuf.Bytes()
	}
	rb := &sentBody{Reader: bytes.NewReader(sent), closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, rb)
	if err != nil {
		return nil, false, &permanentError{fmt.Errorf("otlp export: %w", err)}
	}
	req.ContentLength = int64(len(sent))
	req.Header.Set("Content-Type", "application/x-protobuf")
	if h.gzip != nil {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for _, kv := range h.headers {
		req.Header.Set(kv[0], kv[1])
	}
	resp, err := h.client.Do(req)
	h.reply.Reset()
	if err == nil {
		_, _ = h.reply.ReadFrom(io.LimitReader(resp.Body, maxReply))
		resp.Body.Close()
	}
	// The transport may still read the body after Do returns (it closes it when done): the
	// buffer is written again only after that.
	retained := false
	select {
	case <-rb.closed:
	case <-time.After(time.Second):
		retained = true // never seen closed: leave that buffer to the transport
		if h.gzip != nil {
			h.zbuf = bytes.Buffer{}
		}
	}
	switch {
	case err != nil:
		return nil, retained, fmt.Errorf("otlp export: %w", err)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if strings.Contains(resp.Header.Get("Content-Type"), "json") {
			return nil, retained, nil // not the protobuf asked for: nothing to read in it
		}
		return h.reply.Bytes(), retained, nil
	case retryableHTTP(resp.StatusCode):
		err := fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return nil, retained, &throttledError{err: err, delay: d}
		}
		return nil, retained, err
	}
	return nil, retained, &permanentError{fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)}
}

// retryAfter reads a Retry-After value (RFC 9110, section 10.2.3): a number of seconds or an
// HTTP date. A date in the past is a delay of 0; a value that is neither is no delay.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(min(secs, maxRetryAfter)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// maxRetryAfter bounds a delay a collector asks for, in seconds, so it cannot overflow; any
// delay past the export timeout ends the export at once anyway.
const maxRetryAfter = 24 * 60 * 60

func (h *httpTransport) close() { h.client.CloseIdleConnections() }

// sentBody is a request body that says when the transport closed it.
type sentBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *sentBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// exportMethod is OTLP/gRPC's one method.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// grpcTransport calls TraceService/Export with the encoded request as the message: a codec
// that passes bytes through stands in for protobuf marshalling, so no message objects are
// built. The reply (ExportTraceServiceResponse, whose only content is a partial success) comes
// back as bytes too, for the exporter to read.
type grpcTransport struct {
	conn *grpc.ClientConn
	opts []grpc.CallOption
	md   metadata.MD // OTEL_EXPORTER_OTLP_HEADERS; nil without
}

func newGRPCTransport(u *url.URL, env exportEnv) (*grpcTransport, error) {
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		cfg := env.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(cfg)
	}
	// NewClient does not dial: the connection is made at the first export and again after
	// the collector comes back.
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("tracing endpoint: %w", err)
	}
	g := &grpcTransport{conn: conn, opts: []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}}
	if env.gzip {
		g.opts = append(g.opts, grpc.UseCompressor("gzip"))
	}
	if len(env.headers) > 0 {
		g.md = metadata.MD{}
		for _, kv := range env.headers {
			g.md.Append(strings.ToLower(kv[0]), kv[1])
		}
	}
	return g, nil
}

// retryableGRPC are the codes OTLP/gRPC says to send again after (the specification's list);
// RESOURCE_EXHAUSTED only when the status carries RetryInfo, that is when the collector says it
// can take the data later.
func retryableGRPC(c codes.Code, hasRetryInfo bool) bool {
	switch c {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return true
	case codes.ResourceExhausted:
		return hasRetryInfo
	}
	return false
}

// retryDelay is the delay of the status's RetryInfo detail, if it has one.
func retryDelay(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return max(0, ri.GetRetryDelay().AsDuration()), true
		}
	}
	return 0, false
}

func (g *grpcTransport) send(ctx context.Context, body []byte) ([]byte, bool, error) {
	if g.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, g.md)
	}
	var reply rawMessage
	err := g.conn.Invoke(ctx, exportMethod, rawMessage(body), &reply, g.opts...)
	if err == nil {
		// Answered: the collector read the whole request, so gRPC is done with body.
		return reply, false, nil
	}
	// A call that failed may have left body queued for writing: it stays gRPC's.
	st := status.Convert(err)
	delay, hasRetryInfo := retryDelay(st)
	if !retryableGRPC(st.Code(), hasRetryInfo) {
		return nil, true, &permanentError{fmt.Errorf("otlp export: %w", err)}
	}
	if hasRetryInfo {
		return nil, true, &throttledError{err: fmt.Errorf("otlp export: %w", err), delay: delay}
	}
	return nil, true, fmt.Errorf("otlp export: %w", err)
}

func (g *grpcTransport) close() { _ = g.conn.Close() }

// rawMessage is an already encoded protobuf message.
type rawMessage []byte

// rawCodec passes rawMessage bytes through as the gRPC message, both ways. It names itself
// proto, so the call's content type is application/grpc+proto, what a collector expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	// A SliceBuffer is not returned to any pool when gRPC frees it: the bytes stay ours.
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*m = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
