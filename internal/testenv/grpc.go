package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPCServer is a real grpc-go server on a free loopback port serving grpc.testing.TestService
// (unary, server-, client- and bidirectional-streaming calls) and grpc.health.v1 Health. It
// counts what it saw so tests can wait on it. Safe for concurrent use.
type GRPCServer struct {
	Addr string
	// ID is returned in every SimpleResponse.ServerId: which target answered.
	ID string
	// Health sets the serving status the health service reports.
	Health *health.Server

	srv  *grpc.Server
	lis  net.Listener
	done chan struct{} // closed when Serve returned

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	md    metadata.MD   // the metadata of the last call
	left  time.Duration // the time the last call had left at its start; 0: no deadline
	dead  bool

	// Calls counts calls started; Active is the calls running now; Cancelled counts calls
	// whose context ended (the client went away or the deadline passed) before they finished.
	Calls, Active, Cancelled atomic.Int64
}

// GRPCOptions configure StartGRPC.
type GRPCOptions struct {
	// TLS serves over TLS (ALPN h2) with this configuration; nil serves cleartext HTTP/2 (h2c).
	TLS *tls.Config
	// ID names the server in its answers; "" is its address.
	ID string
}

// StartGRPC starts a server and stops it when the test ends.
func StartGRPC(t testing.TB, opts GRPCOptions) *GRPCServer {
	t.Helper()
	s, err := NewGRPC(opts)
	if err != nil {
		t.Fatalf("grpc server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// NewGRPC starts a server outside a test (an Example); Stop ends it.
func NewGRPC(opts GRPCOptions) (*GRPCServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &GRPCServer{Addr: lis.Addr().String(), ID: opts.ID, Health: health.NewServer(), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	if s.ID == "" {
		s.ID = s.Addr
	}
	s.lis = &trackingListener{Listener: lis, s: s}
	var so []grpc.ServerOption
	if opts.TLS != nil {
		so = append(so, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.srv = grpc.NewServer(so...)
	testgrpc.RegisterTestServiceServer(s.srv, &testService{s: s})
	healthpb.RegisterHealthServer(s.srv, s.Health)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.lis)
	}()
	return s, nil
}

// Stop stops the server: calls running end with an error, connections close.
func (s *GRPCServer) Stop() {
	s.srv.Stop()
	<-s.done
}

// Metadata returns the request metadata of the last call.
func (s *GRPCServer) Metadata() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.md.Copy()
}

// Deadline returns the time the last call had left when it started (grpc-timeout as the
// server read it); 0 when it had no deadline.
func (s *GRPCServer) Deadline() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.left
}

// Kill drops the server as a crashed process would: its listener and every connection close at
// the socket, without a GOAWAY or a status for the calls running.
func (s *GRPCServer) Kill() {
	s.mu.Lock()
	s.dead = true
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	_ = s.lis.Close()
	for c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as the kernel sends for a killed process with unread data
		}
		_ = c.Close()
	}
}

// WaitFor waits up to a minute for cond, checking it every few milliseconds: tests wait on
// what the server saw, not on time.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type trackingListener struct {
	net.Listener
	s *GRPCServer
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.dead {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.s.conns[c] = struct{}{}
	return c, nil
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	s *GRPCServer
}

// begin counts a call and records its metadata; the returned func ends it, counting a
// cancellation when ctx ended first.
func (ts *testService) begin(ctx context.Context) func() {
	s := ts.s
	s.Calls.Add(1)
	s.Active.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	var left time.Duration
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	s.mu.Lock()
	s.md, s.left = md, left
	s.mu.Unlock()
	return func() {
		if ctx.Err() != nil {
			s.Cancelled.Add(1)
		}
		s.Active.Add(-1)
	}
}

func payload(size int32) *testgrpc.Payload {
	return &testgrpc.Payload{Body: make([]byte, max(size, 0))}
}

func echoStatus(e *testgrpc.EchoStatus) error {
	if e == nil || e.Code == 0 {
		return nil
	}
	return status.Error(codes.Code(e.Code), e.Message)
}

func (ts *testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	defer ts.begin(ctx)()
	return &testgrpc.Empty{}, nil
}

func (ts *testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	defer ts.begin(ctx)()
	if err := echoStatus(req.ResponseStatus); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{Payload: payload(req.ResponseSize), ServerId: ts.s.ID}, nil
}

// send answers one request of a stream: a message per response parameter, each after its
// interval, then the echoed status if there is one.
func send(ctx context.Context, req *testgrpc.StreamingOutputCallRequest, out interface {
	Send(*testgrpc.StreamingOutputCallResponse) error
}) error {
	for _, p := range req.ResponseParameters {
		if p.IntervalUs > 0 {
			select {
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-time.After(time.Duration(p.IntervalUs) * time.Microsecond):
			}
		}
		if err := out.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
			return err
		}
	}
	return echoStatus(req.ResponseStatus)
}

func (ts *testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	defer ts.begin(stream.Context())()
	return send(stream.Context(), req, stream)
}

func (ts *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	defer ts.begin(stream.Context())()
	var total int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(req.GetPayload().GetBody()))
	}
}

func (ts *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	defer ts.begin(stream.Context())()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := send(stream.Context(), req, stream); err != nil {
			return err
		}
	}
}

func (ts *testService) HalfDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	defer ts.begin(stream.Context())()
	var reqs []*testgrpc.StreamingOutputCallRequest
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		reqs = append(reqs, req)
	}
	for _, req := range reqs {
		if err := send(stream.Context(), req, stream); err != nil {
			return err
		}
	}
	return nil
}
