package proxy

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

type policyRefusal int

func (p policyRefusal) Error() string                  { return "refused" }
func (p policyRefusal) Status() (code int, close bool) { return int(p), false }

// TestGRPCCodes: the gateway's errors map to one HTTP status and one gRPC status, both here.
func TestGRPCCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		http int
		grpc int
	}{
		{ErrNoTarget, 503, grpcUnavailable},
		{ErrNoRoute, 404, grpcUnimplemented},
		{ErrMethodNotAllowed, 405, grpcUnimplemented},
		{ErrRateLimited, 429, grpcResourceExhausted},
		{ErrLimitStoreUnavailable, 503, grpcUnavailable},
		{ErrBodyTooLarge, 413, grpcResourceExhausted},
		{ErrHeaderTooLarge, 431, grpcResourceExhausted},
		{ErrRequestTimeout, 408, grpcDeadlineExceeded},
		{policyRefusal(401), 401, grpcUnauthenticated},
		{policyRefusal(403), 403, grpcPermissionDenied},
		{protocol.ErrBareLF, 400, grpcInternal},
		{&upstream.Error{Kind: upstream.KindConnect}, 502, grpcUnavailable},
		{&upstream.Error{Kind: upstream.KindRead}, 502, grpcUnavailable},
		{&upstream.Error{Kind: upstream.KindTimeout}, 504, grpcDeadlineExceeded},
		{&upstream.Error{Kind: upstream.KindConnectTimeout}, 504, grpcDeadlineExceeded},
		{&upstream.Error{Kind: upstream.KindNoFreeConns}, 503, grpcUnavailable},
		{&upstream.Error{Kind: upstream.KindClient, Err: ErrBodyTooLarge}, 413, grpcResourceExhausted},
		{&upstream.Error{Kind: upstream.KindClient, Err: errors.New("client went away")}, 502, grpcCancelled},
		{fmt.Errorf("%w: boom", ErrBadGatewayInternal), 502, grpcUnavailable},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			code, _ := Status(tc.err)
			if code != tc.http {
				t.Fatalf("HTTP %d, want %d", code, tc.http)
			}
			if g := GRPCCode(code, tc.err); g != tc.grpc {
				t.Fatalf("gRPC %d, want %d", g, tc.grpc)
			}
		})
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "Application/GRPC;charset=x": true,
		"application/grpc-web": false, "application/grpcx": false, "application/json": false, "": false,
	} {
		var h fasthttp.RequestHeader
		h.SetContentType(ct)
		if got := isGRPC(&h); got != want {
			t.Errorf("%q: %v, want %v", ct, got, want)
		}
	}
}

func TestGRPCTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "250m": 250 * time.Millisecond,
		"7u": 7 * time.Microsecond, "99999999n": 99999999, "0m": 0,
	} {
		if d, ok := parseGRPCTimeout([]byte(v)); !ok || d != want {
			t.Errorf("%q: %v %v, want %v", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "S", "1", "123456789S", "1s", "-1S", "1.5S", " 1S"} {
		if d, ok := parseGRPCTimeout([]byte(v)); ok {
			t.Errorf("%q accepted as %v", v, d)
		}
	}
	for d, want := range map[time.Duration]string{
		30 * time.Second: "30000m", time.Microsecond: "1m", 100 * time.Hour: "360000S",
	} {
		if got := string(appendGRPCTimeout(nil, d)); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

func FuzzGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1H", "250m", "99999999n", "99999999H", "", "x", "123456789S"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseGRPCTimeout([]byte(v))
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("%q: negative %v", v, d)
		}
		// The encoding keeps milliseconds, or seconds past 8 digits of them, up to its cap.
		back, ok := parseGRPCTimeout(appendGRPCTimeout(nil, d))
		limit := min(d, 99999999*time.Second)
		if !ok || back > max(d, time.Millisecond) || back < limit-time.Second {
			t.Fatalf("%q: %v does not survive its encoding (%v)", v, d, back)
		}
	})
}

func TestGRPCMessageEncoding(t *testing.T) {
	if got := string(appendGRPCMessage(nil, "rate limit 100% \"exceeded\"\n é")); got != `rate limit 100%25 "exceeded"%0A %C3%A9` {
		t.Fatalf("%q", got)
	}
}

// TestGRPCErrorAllocatesNothing: a gRPC refusal (a rate-limited call) costs no more than the
// JSON one.
func TestGRPCErrorAllocatesNothing(t *testing.T) {
	var resp fasthttp.Response
	writeGRPCError(&resp, grpcResourceExhausted, "rate limit exceeded", false)
	allocs := testing.AllocsPerRun(100, func() {
		writeGRPCError(&resp, grpcResourceExhausted, "rate limit exceeded", false)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per gRPC error", allocs)
	}
	if string(resp.Header.Peek("Grpc-Status")) != "8" || resp.StatusCode() != 200 || string(resp.Header.ContentType()) != "application/grpc" {
		t.Fatalf("response %s", resp.Header.Header())
	}
}
