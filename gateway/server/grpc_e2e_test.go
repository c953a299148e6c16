package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcGateway is a gateway with an h2c listener and a TLS listener offering h2, in front of gRPC
// upstreams, and grpc-go clients for both.
type grpcGateway struct {
	*edgeGateway
	h2c, h2 string // listener addresses
	caFile  string
}

// startGRPCGateway serves rest (the upstreams and routes sections, and anything else at the top
// level) behind an h2c listener and a TLS listener.
func startGRPCGateway(t testing.TB, rest string) *grpcGateway {
	t.Helper()
	p := newPKI(t)
	ports := testenv.FreePorts(t, 2)
	g := &grpcGateway{h2c: fmt.Sprintf("127.0.0.1:%d", ports[0]), h2: fmt.Sprintf("127.0.0.1:%d", ports[1]), caFile: p.ca.CertFile}
	g.edgeGateway = startEdgeGateway(t, g.config(p, rest))
	return g
}

func (g *grpcGateway) config(p *pki, rest string) string {
	return fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
server:
  listeners:
    - {name: h2c, addr: "%s", http2: true}
    - name: h2
      addr: "%s"
      tls:
        certificates: [{cert: %s, key: %s}]
%s`, g.h2c, g.h2, p.shop.CertFile, p.shop.KeyFile, rest)
}

// dial returns a grpc-go client connection to the gateway's listener named "h2c" or "h2".
func (g *grpcGateway) dial(t testing.TB, listener string) *grpc.ClientConn {
	t.Helper()
	target, creds := g.h2c, insecure.NewCredentials()
	if listener == "h2" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		target, creds = g.h2, credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "shop.test"})
	}
	conn, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func grpcUpstreams(addrs ...string) string {
	return fmt.Sprintf(`upstreams:
  grpc: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc}
`, strings.Join(addrs, `", "`))
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sizes(n ...int32) []*testgrpc.ResponseParameters {
	out := make([]*testgrpc.ResponseParameters, len(n))
	for i, s := range n {
		out[i] = &testgrpc.ResponseParameters{Size: s}
	}
	return out
}

// TestGRPCCallKinds runs every kind of gRPC call through the gateway with grpc-go, over h2c and
// over TLS: unary, server-streaming, client-streaming, full-duplex (each answer read before the
// next request is sent, so the request and the response stream at the same time) and
// half-duplex; a status the service ends a stream with reaches the client.
func TestGRPCCallKinds(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "svc"})
	g := startGRPCGateway(t, grpcUpstreams(srv.Addr))
	for _, listener := range []string{"h2c", "h2"} {
		t.Run(listener, func(t *testing.T) {
			c := testgrpc.NewTestServiceClient(g.dial(t, listener))
			ctx := callCtx(t)

			res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 314, Payload: &testgrpc.Payload{Body: make([]byte, 100<<10)}})
			if err != nil || len(res.Payload.Body) != 314 || res.ServerId != "svc" {
				t.Fatalf("unary: %v %v", res, err)
			}

			out, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(1, 2, 3, 4)})
			if err != nil {
				t.Fatal(err)
			}
			for i := int32(1); i <= 4; i++ {
				m, err := out.Recv()
				if err != nil || len(m.Payload.Body) != int(i) {
					t.Fatalf("server stream message %d: %v %v", i, m, err)
				}
			}
			if _, err := out.Recv(); err != io.EOF {
				t.Fatalf("server stream end: %v", err)
			}

			in, err := c.StreamingInputCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{27182, 8, 1828, 45904} {
				if err := in.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, n)}}); err != nil {
					t.Fatal(err)
				}
			}
			sum, err := in.CloseAndRecv()
			if err != nil || sum.AggregatedPayloadSize != 74922 {
				t.Fatalf("client stream: %v %v", sum, err)
			}

			duplex, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int32{31415, 9, 2653, 58979} {
				if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(n)}); err != nil {
					t.Fatal(err)
				}
				m, err := duplex.Recv()
				if err != nil || len(m.Payload.Body) != int(n) {
					t.Fatalf("full duplex answer to %d: %v", n, err)
				}
			}
			if err := duplex.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := duplex.Recv(); err != io.EOF {
				t.Fatalf("full duplex end: %v", err)
			}

			half, err := c.HalfDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int32{5, 6} {
				if err := half.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(n)}); err != nil {
					t.Fatal(err)
				}
			}
			_ = half.CloseSend()
			for _, n := range []int{5, 6} {
				if m, err := half.Recv(); err != nil || len(m.Payload.Body) != n {
					t.Fatalf("half duplex: %v", err)
				}
			}

			// The service's own status at the end of a stream, after its messages.
			ended, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: sizes(1), ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Aborted), Message: "änderung"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ended.Recv(); err != nil {
				t.Fatal(err)
			}
			if _, err := ended.Recv(); status.Code(err) != codes.Aborted || status.Convert(err).Message() != "änderung" {
				t.Fatalf("stream status: %v", err)
			}
		})
	}
}

// TestGRPCDeadlines: the client's deadline (grpc-timeout) is the gateway's, and the route's
// timeout caps it: a call that outlives it ends with DEADLINE_EXCEEDED from the gateway, before
// or after the upstream's answer began, and the service sees its call cancelled.
func TestGRPCDeadlines(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	g := startGRPCGateway(t, fmt.Sprintf(`upstreams:
  grpc: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: short, match: {path_prefix: /grpc.testing.TestService/StreamingOutputCall}, upstream: grpc, timeout: 500ms}
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc, timeout: 1m}
`, srv.Addr))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))

	// The client's 10s deadline is below the route's minute: the service gets it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if left := srv.Deadline(); left <= 0 || left > 10*time.Second {
		t.Fatalf("the service's deadline was %s, want the client's 10s or less", left)
	}

	// No deadline from the client: the route's 500ms ends the call, whether nothing of the
	// answer had arrived yet or its first message had.
	for i, params := range [][]*testgrpc.ResponseParameters{
		{{Size: 1, IntervalUs: 60e6}},
		{{Size: 1}, {Size: 1, IntervalUs: 60e6}},
	} {
		stream, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err = stream.Recv(); err != nil {
				break
			}
		}
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d: %v, want DEADLINE_EXCEEDED from the gateway", i, err)
		}
		testenv.WaitFor(t, "the service to see the call cancelled", func() bool { return srv.Cancelled.Load() == int64(i+1) })
	}
}

// TestGRPCClientCancellation: a client that cancels a streaming call resets its stream; the
// gateway resets the upstream's, the service sees its context end, and least_conn's count of
// the target's streams returns to zero.
func TestGRPCClientCancellation(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	g := startGRPCGateway(t, grpcUpstreams(srv.Addr))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))

	ctx, cancel := context.WithCancel(context.Background())
	duplex, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); err != nil {
		t.Fatal(err)
	}
	target := g.Snapshot().Upstreams["grpc"].Targets()[0]
	if n := target.InFlight(); n != 1 {
		t.Fatalf("streams in flight %d, want 1", n)
	}
	cancel()
	testenv.WaitFor(t, "the service to see the call cancelled", func() bool { return srv.Cancelled.Load() == 1 && srv.Active.Load() == 0 })
	testenv.WaitFor(t, "the target's stream count to drop", func() bool { return target.InFlight() == 0 })
	if f := target.Stats().Failures; f != 0 {
		t.Fatalf("a client's cancellation counted %d failures against the target", f)
	}
}

// TestGRPCTargetKilledMidStream: the target dies under an open stream; the client gets
// UNAVAILABLE in the trailers (not a broken stream), and the next call goes to the other target.
func TestGRPCTargetKilledMidStream(t *testing.T) {
	a := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "a"})
	b := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "b"})
	g := startGRPCGateway(t, fmt.Sprintf(`upstreams:
  grpc: {protocol: h2c, balance: round_robin, targets: ["%s", "%s"]}
routes:
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc}
`, a.Addr, b.Addr))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))
	ctx := callCtx(t)

	duplex, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); err != nil {
		t.Fatal(err)
	}
	victim, survivor := a, "b"
	if b.Active.Load() == 1 {
		victim, survivor = b, "a"
	}
	victim.Kill()
	_, err = duplex.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after its target died: %v, want UNAVAILABLE", err)
	}
	for range 4 {
		res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil || res.ServerId != survivor {
			t.Fatalf("call after the kill: %v %v, want an answer from %s", res, err, survivor)
		}
	}
}

// TestGRPCReloadDuringLongStream: reloads while a bidirectional stream is open, one that keeps
// its upstream and one that replaces its target, leave the stream working to its end.
func TestGRPCReloadDuringLongStream(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "old"})
	next := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "new"})
	p := newPKI(t)
	ports := testenv.FreePorts(t, 2)
	g := &grpcGateway{h2c: fmt.Sprintf("127.0.0.1:%d", ports[0]), h2: fmt.Sprintf("127.0.0.1:%d", ports[1]), caFile: p.ca.CertFile}
	g.edgeGateway = startEdgeGateway(t, g.config(p, grpcUpstreams(srv.Addr)))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))
	ctx := callCtx(t)

	duplex, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(n int32) {
		t.Helper()
		if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(n)}); err != nil {
			t.Fatal(err)
		}
		if m, err := duplex.Recv(); err != nil || len(m.Payload.Body) != int(n) {
			t.Fatalf("answer to %d: %v", n, err)
		}
	}
	exchange(1)
	for i, rest := range []string{
		grpcUpstreams(srv.Addr) + "  - {name: other, match: {path_prefix: /other/}, upstream: grpc}\n",
		grpcUpstreams(next.Addr),
	} {
		if _, err := g.Apply(mustParse(t, g.config(p, rest)), "test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		exchange(int32(10 + i))
	}
	// New calls reach the new target; the old stream still talks to the old one.
	if res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil || res.ServerId != "new" {
		t.Fatalf("call after the reload: %v %v", res, err)
	}
	exchange(3)
	if err := duplex.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	if srv.Cancelled.Load() != 0 {
		t.Fatal("the reload cancelled the stream at the old target")
	}
}

// TestGRPCLeastConnCountsStreams: a target holding an open stream gets none of the calls that
// follow while the other target is idle; least_conn counts streams, not connections (both
// targets' calls share one connection each).
func TestGRPCLeastConnCountsStreams(t *testing.T) {
	a := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "a"})
	b := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "b"})
	g := startGRPCGateway(t, fmt.Sprintf(`upstreams:
  grpc: {protocol: h2c, balance: least_conn, targets: ["%s", "%s"]}
routes:
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc}
`, a.Addr, b.Addr))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))
	ctx := callCtx(t)

	duplex, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := duplex.Recv(); err != nil {
		t.Fatal(err)
	}
	busy, idle := "a", "b"
	if b.Active.Load() == 1 {
		busy, idle = "b", "a"
	}
	for i := range 20 {
		res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil || res.ServerId != idle {
			t.Fatalf("call %d went to %v (%v); %s holds a stream, %s is idle", i, res.GetServerId(), err, busy, idle)
		}
	}
	_ = duplex.CloseSend()
	if _, err := duplex.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	for _, tg := range g.Snapshot().Upstreams["grpc"].Targets() {
		if s := tg.Stats(); s.Dials != 1 || s.InFlight != 0 {
			t.Fatalf("target %s: %d dials, %d in flight; want one multiplexed connection and none", tg.Addr, s.Dials, s.InFlight)
		}
	}
}

// TestGRPCHealthChecksThroughGateway: grpc.health.v1 checks take a NOT_SERVING target out of
// rotation and bring it back when it serves again.
func TestGRPCHealthChecksThroughGateway(t *testing.T) {
	a := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "a"})
	b := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "b"})
	for _, s := range []*testenv.GRPCServer{a, b} {
		s.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	}
	g := startGRPCGateway(t, fmt.Sprintf(`upstreams:
  grpc:
    protocol: h2c
    balance: round_robin
    targets: ["%s", "%s"]
    health_check: {grpc_service: grpc.testing.TestService, interval: 50ms, timeout: 50ms, healthy: 1, unhealthy: 1}
routes:
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc}
`, a.Addr, b.Addr))
	c := testgrpc.NewTestServiceClient(g.dial(t, "h2c"))
	ctx := callCtx(t)
	targets := g.Snapshot().Upstreams["grpc"].Targets()
	health := func(addr string) string {
		for _, tg := range targets {
			if tg.Addr == addr {
				return tg.Health(time.Now().UnixNano()).String()
			}
		}
		return "missing"
	}

	a.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_NOT_SERVING)
	testenv.WaitFor(t, "a to be taken out", func() bool { return health(a.Addr) == "unhealthy" })
	for range 6 {
		if res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil || res.ServerId != "b" {
			t.Fatalf("with a unhealthy: %v %v", res, err)
		}
	}
	a.Health.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	testenv.WaitFor(t, "a to be back", func() bool { return health(a.Addr) == "healthy" })
	seen := map[string]bool{}
	for range 6 {
		res, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen[res.ServerId] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("answers from %v after a recovered, want both", seen)
	}
}

// TestGRPCGatewayErrorsWithGRPCClient: what grpc-go reports for the gateway's own refusals.
func TestGRPCGatewayErrorsWithGRPCClient(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	g := startGRPCGateway(t, fmt.Sprintf(`jwt: {jwks_url: "%s", issuer: archway-users, audience: archway, algorithms: [EdDSA]}
upstreams:
  grpc: {protocol: h2c, targets: ["%s"]}
  dead: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: limited, match: {path_prefix: /grpc.testing.TestService/EmptyCall}, upstream: grpc, rate_limit: {rate: 1/m, burst: 1}}
  - {name: secured, match: {path_prefix: /grpc.testing.TestService/UnaryCall}, upstream: grpc, auth: {jwt: required}}
  - {name: dead, match: {path_prefix: /grpc.testing.TestService/StreamingOutputCall}, upstream: dead}
`, jwks.URL(), srv.Addr, deadAddr(t)))
	conn := g.dial(t, "h2c")
	c := testgrpc.NewTestServiceClient(conn)
	ctx := callCtx(t)

	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.EmptyCall(ctx, &testgrpc.Empty{})
	expectCode(t, "rate limited", err, codes.ResourceExhausted)
	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	expectCode(t, "no token", err, codes.Unauthenticated)
	tok := key.Token(t, authtest.Claims("42"))
	res, err := c.UnaryCall(grpcBearer(ctx, tok), &testgrpc.SimpleRequest{ResponseSize: 2})
	if err != nil || len(res.Payload.Body) != 2 {
		t.Fatalf("with a token: %v %v", res, err)
	}
	stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes(1)})
	if err == nil {
		_, err = stream.Recv()
	}
	expectCode(t, "no target", err, codes.Unavailable)
	err = conn.Invoke(ctx, "/grpc.testing.Unknown/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
	expectCode(t, "no route", err, codes.Unimplemented)
}

func expectCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("%s: %v, want %s", what, err, want)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "{") {
		t.Fatalf("%s: message %q reveals internals or is not the gRPC form", what, msg)
	}
}

func grpcBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
