package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// ExampleGRPCClient is the client example of docs/grpc.md: a grpc-go client calls a gRPC
// service through the gateway's h2c listener, the gateway reaching the service over h2c.
func Example_gRPCClient() {
	svc, err := testenv.NewGRPC(testenv.GRPCOptions{ID: "cart-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	gatewayAddr := ln.Addr().String()
	_ = ln.Close()
	cfg, err := config.Parse(fmt.Appendf(nil, `
admin: {listen: ""}
access_log: {enabled: false}
server:
  listeners: [{addr: "%s", http2: true}]
upstreams:
  cart:
    protocol: h2c
    targets: ["%s"]
routes:
  - name: cart
    match: {path_prefix: /grpc.testing.TestService/}
    upstream: cart
`, gatewayAddr, svc.Addr), "routes.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	gw, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	lns, err := gw.Listen()
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = gw.ServeListeners(lns) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	}()

	// The client side, as in docs/grpc.md.
	conn, err := grpc.NewClient(gatewayAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes from %s\n", len(resp.Payload.Body), resp.ServerId)
	// Output: 3 bytes from cart-1
}
