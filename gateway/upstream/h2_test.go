package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

func h2Config(p config.UpstreamProtocol, addrs ...string) *config.Upstream {
	c := &config.Upstream{
		Balance:           "least_conn",
		MaxFails:          2,
		FailTimeout:       config.Duration(time.Minute),
		ConnectTimeout:    config.Duration(time.Second),
		Timeout:           config.Duration(10 * time.Second),
		MaxConnsPerTarget: 8,
		QueueTimeout:      config.Duration(time.Second),
		IdleConnTimeout:   config.Duration(time.Minute),
		MaxResponseBytes:  config.Size(1 << 30),
		Protocol:          p,
	}
	for _, a := range addrs {
		c.Targets = append(c.Targets, config.Target{Addr: a, Weight: 1})
	}
	return c
}

// grpcFrame is one length-prefixed gRPC message (uncompressed).
func grpcFrame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// grpcRequest is a gRPC call's request as the proxy hands it to DoH2.
func grpcRequest(method string, body []byte) *fasthttp.Request {
	req := &fasthttp.Request{}
	req.Header.SetMethod("POST")
	req.SetRequestURI("/grpc.testing.TestService/" + method)
	req.Header.SetHost("grpc.test")
	req.Header.SetContentType("application/grpc")
	req.SetBody(body)
	return req
}

// readMessages reads a gRPC response body to its end and returns its messages.
func readMessages(t testing.TB, r io.Reader) [][]byte {
	t.Helper()
	var msgs [][]byte
	for {
		var prefix [5]byte
		if _, err := io.ReadFull(r, prefix[:]); err == io.EOF {
			return msgs
		} else if err != nil {
			t.Fatalf("reading a message prefix: %v", err)
		}
		m := make([]byte, binary.BigEndian.Uint32(prefix[1:]))
		if _, err := io.ReadFull(r, m); err != nil {
			t.Fatalf("reading a message: %v", err)
		}
		msgs = append(msgs, m)
	}
}

func buildH2(t *testing.T, reg *Registry, p config.UpstreamProtocol, addrs ...string) *Upstream {
	t.Helper()
	u, err := reg.Build("grpc", h2Config(p, addrs...), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Commit([]*Upstream{u})
	return u
}

func unary(t *testing.T, u *Upstream, tg *Target, req *testgrpc.SimpleRequest) (*fasthttp.Response, *testgrpc.SimpleResponse) {
	t.Helper()
	resp := &fasthttp.Response{}
	err := u.DoH2(tg, grpcRequest("UnaryCall", grpcFrame(t, req)), resp, newRoundTrip(10*time.Second), &H2RoundTrip{TE: true, GRPC: true})
	if err != nil {
		t.Fatalf("DoH2: %v", err)
	}
	var out *testgrpc.SimpleResponse
	if s := resp.BodyStream(); s != nil {
		msgs := readMessages(t, s)
		if len(msgs) == 1 {
			out = &testgrpc.SimpleResponse{}
			if err := proto.Unmarshal(msgs[0], out); err != nil {
				t.Fatal(err)
			}
		}
		_ = resp.CloseBodyStream()
	}
	return resp, out
}

// TestH2CUnaryCarriesTrailersAndMultiplexes sends unary gRPC calls over h2c to a real grpc-go
// server: the answer's grpc-status arrives as a fasthttp trailer after the body, and 20 calls at
// once share one connection.
func TestH2CUnaryCarriesTrailersAndMultiplexes(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "a"})
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2C, srv.Addr)
	tg := u.Targets()[0]

	resp, out := unary(t, u, tg, &testgrpc.SimpleRequest{ResponseSize: 100})
	if resp.StatusCode() != 200 || string(resp.Header.ContentType()) != "application/grpc" {
		t.Fatalf("status %d content-type %q", resp.StatusCode(), resp.Header.ContentType())
	}
	if out == nil || len(out.Payload.Body) != 100 || out.ServerId != "a" {
		t.Fatalf("response %v", out)
	}
	if got := string(resp.Header.Peek("Grpc-Status")); got != "0" {
		t.Fatalf("grpc-status trailer %q, want 0", got)
	}
	if tg.InFlight() != 0 {
		t.Fatalf("in flight after the body ended: %d", tg.InFlight())
	}

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := &fasthttp.Response{}
			if err := u.DoH2(tg, grpcRequest("UnaryCall", grpcFrame(t, &testgrpc.SimpleRequest{ResponseSize: 10})), resp, newRoundTrip(10*time.Second), &H2RoundTrip{TE: true, GRPC: true}); err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.BodyStream())
			_ = resp.CloseBodyStream()
		}()
	}
	wg.Wait()
	if s := tg.Stats(); s.Dials != 1 || s.OpenConns != 1 {
		t.Fatalf("dials %d open %d, want one multiplexed connection", s.Dials, s.OpenConns)
	}
}

// TestH2StreamCountsInFlight holds a server-streaming call open: least_conn sees it in flight
// until its body ends, and a status the server ends with arrives as a trailer.
func TestH2StreamCountsInFlight(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2C, srv.Addr)
	tg := u.Targets()[0]

	req := &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2, IntervalUs: 60e6}},
		ResponseStatus:     &testgrpc.EchoStatus{Code: 9, Message: "done"},
	}
	resp := &fasthttp.Response{}
	if err := u.DoH2(tg, grpcRequest("StreamingOutputCall", grpcFrame(t, req)), resp, newRoundTrip(time.Minute), &H2RoundTrip{TE: true, GRPC: true}); err != nil {
		t.Fatal(err)
	}
	if tg.InFlight() != 1 {
		t.Fatalf("in flight %d while the stream is open, want 1", tg.InFlight())
	}
	var prefix [6]byte // the first message: 5 bytes of prefix, 1 byte of payload... and more
	if _, err := io.ReadFull(resp.BodyStream(), prefix[:5]); err != nil {
		t.Fatal(err)
	}
	_ = resp.CloseBodyStream() // the client goes away
	if tg.InFlight() != 0 {
		t.Fatalf("in flight %d after the client closed the stream", tg.InFlight())
	}
	testenv.WaitFor(t, "the server to see the stream cancelled", func() bool { return srv.Cancelled.Load() == 1 })

	// A stream read to its end ends with the server's status in the trailers.
	req.ResponseParameters[1].IntervalUs = 0
	resp = &fasthttp.Response{}
	if err := u.DoH2(tg, grpcRequest("StreamingOutputCall", grpcFrame(t, req)), resp, newRoundTrip(time.Minute), &H2RoundTrip{TE: true, GRPC: true}); err != nil {
		t.Fatal(err)
	}
	if msgs := readMessages(t, resp.BodyStream()); len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if st, msg := string(resp.Header.Peek("Grpc-Status")), string(resp.Header.Peek("Grpc-Message")); st != "9" || msg != "done" {
		t.Fatalf("trailers grpc-status %q grpc-message %q", st, msg)
	}
}

// TestH2UnavailableCountsAsFailure: UNAVAILABLE (14) from the target, trailers-only or at the
// end of a stream, counts toward max_fails (2 here) and ejects the target; other statuses don't.
func TestH2UnavailableCountsAsFailure(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2C, srv.Addr)
	tg := u.Targets()[0]

	unary(t, u, tg, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: 5, Message: "not found"}})
	if f := tg.Stats().Failures; f != 0 {
		t.Fatalf("NOT_FOUND counted as %d failures", f)
	}
	resp, _ := unary(t, u, tg, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: 14, Message: "going away"}})
	if st := string(resp.Header.Peek("Grpc-Status")); st != "14" {
		t.Fatalf("grpc-status %q", st)
	}
	if f := tg.Stats().Failures; f != 1 {
		t.Fatalf("failures %d after one UNAVAILABLE, want 1", f)
	}
	// The second UNAVAILABLE comes at the end of a stream, in the trailers.
	req := &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}},
		ResponseStatus:     &testgrpc.EchoStatus{Code: 14, Message: "going away"},
	}
	resp = &fasthttp.Response{}
	if err := u.DoH2(tg, grpcRequest("StreamingOutputCall", grpcFrame(t, req)), resp, newRoundTrip(time.Minute), &H2RoundTrip{TE: true, GRPC: true}); err != nil {
		t.Fatal(err)
	}
	readMessages(t, resp.BodyStream())
	now := time.Now().UnixNano()
	if f := tg.Stats().Failures; f != 2 || tg.Health(now) != Ejected {
		t.Fatalf("failures %d health %s, want 2 and ejected", f, tg.Health(now))
	}
}

// TestH2DeadlineAndDeadTarget: a call past its deadline fails as a timeout; a target that is
// gone fails as a connection error that sent nothing, counted toward max_fails.
func TestH2DeadlineAndDeadTarget(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2C, srv.Addr)
	tg := u.Targets()[0]

	req := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 60e6}}}
	resp := &fasthttp.Response{}
	err := u.DoH2(tg, grpcRequest("StreamingOutputCall", grpcFrame(t, req)), resp, newRoundTrip(100*time.Millisecond), &H2RoundTrip{TE: true, GRPC: true})
	if err == nil {
		// grpc-go sends the headers first: the deadline then ends the body.
		var bodyErr *Error
		var seen error
		_, seen = io.Copy(io.Discard, resp.BodyStream())
		if !errors.As(seen, &bodyErr) || bodyErr.Kind != KindTimeout {
			t.Fatalf("body error %v, want a timeout", seen)
		}
	} else if kindOf(err) != KindTimeout {
		t.Fatalf("error %v, want a timeout", err)
	}
	testenv.WaitFor(t, "the server to see the deadline", func() bool { return srv.Cancelled.Load() == 1 })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	u2 := buildH2(t, reg, config.ProtocolH2C, dead)
	err = u2.DoH2(u2.Targets()[0], grpcRequest("EmptyCall", grpcFrame(t, &testgrpc.Empty{})), &fasthttp.Response{}, newRoundTrip(time.Second), &H2RoundTrip{GRPC: true})
	var ue *Error
	if !errors.As(err, &ue) || ue.Kind != KindConnect || !ue.NotSent() {
		t.Fatalf("error %v, want a connect failure that sent nothing", err)
	}
	if f := u2.Targets()[0].Stats().Failures; f != 1 {
		t.Fatalf("failures %d, want 1", f)
	}
}

// TestH2OverTLS reaches a grpc-go server over TLS with ALPN h2, verifying its certificate for
// the target's host.
func TestH2OverTLS(t *testing.T) {
	cert, pool := selfSigned(t, "127.0.0.1")
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	reg := NewRegistry(nil, nil)
	reg.rootCAs = pool
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2, srv.Addr)
	_, out := unary(t, u, u.Targets()[0], &testgrpc.SimpleRequest{ResponseSize: 7})
	if out == nil || len(out.Payload.Body) != 7 {
		t.Fatalf("response %v", out)
	}

	// Without the certificate's issuer among the roots the handshake fails: nothing sent.
	reg2 := NewRegistry(nil, nil)
	t.Cleanup(reg2.Close)
	u2 := buildH2(t, reg2, config.ProtocolH2, srv.Addr)
	err := u2.DoH2(u2.Targets()[0], grpcRequest("EmptyCall", grpcFrame(t, &testgrpc.Empty{})), &fasthttp.Response{}, newRoundTrip(5*time.Second), &H2RoundTrip{GRPC: true})
	if kindOf(err) != KindConnect {
		t.Fatalf("error %v, want a connect failure (unknown authority)", err)
	}
}

// TestGRPCHealthCheck probes targets with grpc.health.v1: NOT_SERVING takes a target out,
// SERVING brings it back.
func TestGRPCHealthCheck(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	srv.Health.SetServingStatus("shop", healthpb.HealthCheckResponse_SERVING)
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	c := h2Config(config.ProtocolH2C, srv.Addr)
	service := "shop"
	c.HealthCheck = &config.HealthCheck{
		Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(20 * time.Millisecond),
		Healthy: 1, Unhealthy: 1, GRPCService: &service,
	}
	u, err := reg.Build("grpc", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Commit([]*Upstream{u})
	tg := u.Targets()[0]
	testenv.WaitFor(t, "a passed check", func() bool { return tg.Stats().ChecksPassed > 0 })
	srv.Health.SetServingStatus("shop", healthpb.HealthCheckResponse_NOT_SERVING)
	testenv.WaitFor(t, "the target to turn unhealthy", func() bool { return tg.Health(time.Now().UnixNano()) == Unhealthy })
	srv.Health.SetServingStatus("shop", healthpb.HealthCheckResponse_SERVING)
	testenv.WaitFor(t, "the target to turn healthy", func() bool { return tg.Health(time.Now().UnixNano()) == Healthy })
}

// TestHTTP1UpstreamHasNoH2Client: an http1 upstream's targets carry no HTTP/2 transport.
func TestHTTP1UpstreamHasNoH2Client(t *testing.T) {
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolHTTP1, "127.0.0.1:1")
	if u.HTTP2() || u.Targets()[0].h2 != nil {
		t.Fatal("an http1 upstream built an HTTP/2 client")
	}
	err := u.DoH2(u.Targets()[0], grpcRequest("EmptyCall", nil), &fasthttp.Response{}, newRoundTrip(time.Second), &H2RoundTrip{})
	if kindOf(err) != KindProtocol {
		t.Fatalf("DoH2 on an http1 target: %v", err)
	}
}

// selfSigned makes a certificate for ip and a pool holding it.
func selfSigned(t *testing.T, ip string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestH2TargetDiesUnderOpenStream: the target dies while a bidirectional stream waits for the
// client's next message; the response body fails as a read failure counted against the target,
// at once, not when the deadline (a minute here) ends the wait for the client.
func TestH2TargetDiesUnderOpenStream(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	reg := NewRegistry(nil, nil)
	t.Cleanup(reg.Close)
	u := buildH2(t, reg, config.ProtocolH2C, srv.Addr)
	tg := u.Targets()[0]

	clientBody, clientWrites := io.Pipe()
	t.Cleanup(func() { _ = clientWrites.Close() })
	req := grpcRequest("FullDuplexCall", nil)
	resp := &fasthttp.Response{}
	go func() {
		_, _ = clientWrites.Write(grpcFrame(t, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 3}}}))
	}()
	if err := u.DoH2(tg, req, resp, newRoundTrip(time.Minute), &H2RoundTrip{TE: true, GRPC: true, Body: clientBody}); err != nil {
		t.Fatal(err)
	}
	var first [8]byte
	if _, err := io.ReadFull(resp.BodyStream(), first[:]); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	srv.Kill()
	_, err := io.Copy(io.Discard, resp.BodyStream())
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindRead {
		t.Fatalf("body after the target died: %v, want a read failure", err)
	}
	if f := tg.Stats().Failures; f != 1 || tg.InFlight() != 0 {
		t.Fatalf("failures %d in flight %d, want 1 and 0", f, tg.InFlight())
	}
}

// TestH2WithUpstreamTLSSection: an h2 upstream uses its `tls` section as HTTP/1.1 upstreams do:
// the CA from ca_file verifies the target (no test hook on the roots), and a wrong server_name
// fails the handshake before anything is sent.
func TestH2WithUpstreamTLSSection(t *testing.T) {
	cert, _ := selfSigned(t, "127.0.0.1")
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(tlsSection *config.UpstreamTLS) *Upstream {
		reg := NewRegistry(nil, nil)
		t.Cleanup(reg.Close)
		c := h2Config(config.ProtocolH2, srv.Addr)
		c.TLS = tlsSection
		u, err := reg.Build("grpc", c, nil)
		if err != nil {
			t.Fatal(err)
		}
		reg.Commit([]*Upstream{u})
		return u
	}
	u := build(&config.UpstreamTLS{CAFile: caFile, MinVersion: "1.2"})
	if _, out := unary(t, u, u.Targets()[0], &testgrpc.SimpleRequest{ResponseSize: 5}); out == nil || len(out.Payload.Body) != 5 {
		t.Fatalf("response %v", out)
	}
	wrong := build(&config.UpstreamTLS{CAFile: caFile, MinVersion: "1.2", ServerName: "other.internal"})
	err := wrong.DoH2(wrong.Targets()[0], grpcRequest("EmptyCall", grpcFrame(t, &testgrpc.Empty{})), &fasthttp.Response{}, newRoundTrip(5*time.Second), &H2RoundTrip{GRPC: true})
	if kindOf(err) != KindConnect {
		t.Fatalf("error %v, want a connect failure (certificate not valid for other.internal)", err)
	}
}
