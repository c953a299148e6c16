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
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/exportqueue"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor OTEL_EXPORTER_OTLP_COMPRESSION may name
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// exporter is the export queue's exporter of span records: it encodes a batch once (otlp.go),
// returns the records to the free list, and sends the bytes over the configured transport, again
// after a pause while the collector is unreachable or answers with a retryable refusal, until
// the export timeout ends.
//
// Export is called by the queue's goroutine only; Shutdown once, after the last Export.
type exporter struct {
	enc  encoder
	send transport
	body []byte
}

var _ exportqueue.Exporter[*Span] = (*exporter)(nil)

// transport delivers one encoded ExportTraceServiceRequest. retained reports that the transport
// may still read body after send returned (a request abandoned mid-write): the exporter then
// leaves that buffer to it and takes a new one.
type transport interface {
	send(ctx context.Context, body []byte) (retained bool, err error)
	close()
}

// permanentError is a failure that sending again cannot change: a refusal the protocol calls
// final, or a request that cannot be made.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

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
		retained, err := e.send.send(ctx, body)
		if retained {
			e.body = nil
		}
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("otlp export: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
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
	e := &exporter{enc: newEncoder(cfg.ServiceName)}
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
}

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

func (h *httpTransport) send(ctx context.Context, body []byte) (bool, error) {
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
		return false, &permanentError{fmt.Errorf("otlp export: %w", err)}
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
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
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
		return retained, fmt.Errorf("otlp export: %w", err)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return retained, nil
	case retryableHTTP(resp.StatusCode):
		return retained, fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)
	}
	return retained, &permanentError{fmt.Errorf("otlp export: collector answered %d", resp.StatusCode)}
}

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
// built. The reply (ExportTraceServiceResponse, whose only content is a partial success) is
// not decoded, as the SDK's exporter only logs it.
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

// retryableGRPC are the codes OTLP/gRPC says to send again after (the specification's list;
// RESOURCE_EXHAUSTED only with retry information, which is not read here, so never).
func retryableGRPC(c codes.Code) bool {
	switch c {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

func (g *grpcTransport) send(ctx context.Context, body []byte) (bool, error) {
	if g.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, g.md)
	}
	var reply rawMessage
	err := g.conn.Invoke(ctx, exportMethod, rawMessage(body), &reply, g.opts...)
	if err == nil {
		// Answered: the collector read the whole request, so gRPC is done with body.
		return false, nil
	}
	// A call that failed may have left body queued for writing: it stays gRPC's.
	if retryableGRPC(status.Code(err)) {
		return true, fmt.Errorf("otlp export: %w", err)
	}
	return true, &permanentError{fmt.Errorf("otlp export: %w", err)}
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
