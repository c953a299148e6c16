package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/auth/authtest"
	"github.com/archway-gateway/archway/internal/testenv"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// grpcFrame is one length-prefixed, uncompressed gRPC message.
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

// grpcOverHTTP1 posts one gRPC call's body as an HTTP/1.1 request: what a gRPC-speaking proxy
// or a test harness without HTTP/2 sends. The gateway forwards it to an h2c upstream and
// answers with the upstream's body and trailers (chunked, with a Trailer section).
func grpcOverHTTP1(t testing.TB, url string, body []byte, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// grpcStatusOf is the call's status: in the trailers, or in the head of a trailers-only answer.
func grpcStatusOf(resp *http.Response) (status, message string) {
	if s := resp.Trailer.Get("Grpc-Status"); s != "" {
		return s, resp.Trailer.Get("Grpc-Message")
	}
	return resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
}

// TestGRPCThroughHTTP1ToH2C: an HTTP/1.1 request carrying a gRPC call reaches an h2c grpc-go
// server and comes back with its messages and grpc-status trailer; the upstream's answer of
// an error status comes back as that status.
func TestGRPCThroughHTTP1ToH2C(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{ID: "one"})
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  grpc: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: grpc, match: {path_prefix: /grpc.testing.TestService/}, upstream: grpc}
`, srv.Addr))

	resp, body := grpcOverHTTP1(t, gw.URL+"/grpc.testing.TestService/UnaryCall", grpcFrame(t, &testgrpc.SimpleRequest{ResponseSize: 42}))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if st, msg := grpcStatusOf(resp); st != "0" {
		t.Fatalf("grpc-status %q (%q), want 0", st, msg)
	}
	var out testgrpc.SimpleResponse
	if len(body) < 5 || proto.Unmarshal(body[5:], &out) != nil || len(out.Payload.GetBody()) != 42 || out.ServerId != "one" {
		t.Fatalf("body %x", body)
	}
	// The route's timeout (30s by default) reaches the server as its deadline, and the
	// forwarded headers as metadata.
	if left := srv.Deadline(); left <= time.Second || left > 30*time.Second {
		t.Fatalf("upstream deadline %s, want the route's 30s", left)
	}
	if md := srv.Metadata(); len(md.Get("x-forwarded-for")) == 0 || len(md.Get("x-request-id")) == 0 {
		t.Fatalf("upstream metadata %v: want X-Forwarded-For and X-Request-Id", md)
	}

	resp, _ = grpcOverHTTP1(t, gw.URL+"/grpc.testing.TestService/UnaryCall", grpcFrame(t, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: 7, Message: "no, 100%"}}))
	if st, msg := grpcStatusOf(resp); st != "7" || msg != "no, 100%25" {
		t.Fatalf("grpc-status %q grpc-message %q, want the upstream's 7", st, msg)
	}
}

// TestGRPCErrorsFromTheGateway: the gateway's own refusals of a gRPC call are gRPC errors
// (HTTP 200, application/grpc, the status in grpc-status), never JSON: no target UNAVAILABLE,
// no route UNIMPLEMENTED, rate limited RESOURCE_EXHAUSTED, no credentials UNAUTHENTICATED. A
// plain request on the same routes still gets the JSON error.
func TestGRPCErrorsFromTheGateway(t *testing.T) {
	srv := testenv.StartGRPC(t, testenv.GRPCOptions{})
	key := authtest.NewKey(t)
	jwks := authtest.NewJWKSServer(t, key.JWK())
	_, opt := withPolicies(t)
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
jwt: {jwks_url: "%s", issuer: archway-users, audience: archway, algorithms: [EdDSA]}
upstreams:
  grpc: {protocol: h2c, targets: ["%s"]}
  dead: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: dead, match: {path_prefix: /dead.Service/}, upstream: dead}
  - {name: limited, match: {path_prefix: /grpc.testing.TestService/EmptyCall}, upstream: grpc, rate_limit: {rate: 1/m, burst: 1}}
  - {name: secured, match: {path_prefix: /grpc.testing.TestService/UnaryCall}, upstream: grpc, auth: {jwt: required}}
`, jwks.URL(), srv.Addr, deadAddr(t)), opt)

	empty := grpcFrame(t, &testgrpc.Empty{})
	resp, _ := grpcOverHTTP1(t, gw.URL+"/grpc.testing.TestService/EmptyCall", empty)
	if st, _ := grpcStatusOf(resp); st != "0" {
		t.Fatalf("first call within the limit: grpc-status %q", st)
	}
	for _, tc := range []struct {
		name, path string
		headers    []string
		want       string
	}{
		{"no target", "/dead.Service/Call", nil, "14"},
		{"no route", "/other.Service/Call", nil, "12"},
		{"rate limited", "/grpc.testing.TestService/EmptyCall", nil, "8"},
		{"unauthenticated", "/grpc.testing.TestService/UnaryCall", nil, "16"},
		{"bad token", "/grpc.testing.TestService/UnaryCall", []string{"Authorization", "Bearer nope"}, "16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := grpcOverHTTP1(t, gw.URL+tc.path, empty, tc.headers...)
			st, msg := grpcStatusOf(resp)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc" || st != tc.want || len(body) != 0 {
				t.Fatalf("status %d content-type %q grpc-status %q (%q) body %q; want 200 application/grpc %s and no body",
					resp.StatusCode, resp.Header.Get("Content-Type"), st, msg, body, tc.want)
			}
			if bytes.Contains([]byte(msg), []byte("127.0.0.1")) {
				t.Fatalf("grpc-message reveals an internal address: %q", msg)
			}
		})
	}
	// Not a gRPC call: the same refusal is the JSON error.
	r := do(t, http.MethodPost, gw.URL+"/dead.Service/Call", bytes.NewReader(empty), "Content-Type", "application/octet-stream")
	expectStatus(t, r, 502)
	if r.Headers.Get("Content-Type") != "application/json" {
		t.Fatalf("plain request got %q", r.Headers.Get("Content-Type"))
	}
}
