package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// TestGRPCGatewayErrorIsRecordedWithItsStatus: a gRPC call the gateway answers itself leaves as
// HTTP 200 with grpc-status 14 in the head. The access log line says status 200 and
// grpc_status 14, archway_requests_total counts it as sent (200) and archway_grpc_errors_total
// by its gRPC status.
func TestGRPCGatewayErrorIsRecordedWithItsStatus(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePorts(t, 1)[0])
	g := startEdgeGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: true, output: %q, flush: 10ms}
server:
  listeners:
    - {name: h2c, addr: "%s", http2: true}
upstreams:
  dead: {protocol: h2c, targets: ["%s"]}
routes:
  - {name: dead, match: {path_prefix: /grpc.testing.TestService/}, upstream: dead}
`, logFile, addr, deadAddr(t)))
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = testgrpc.NewTestServiceClient(conn).EmptyCall(callCtx(t), &testgrpc.Empty{})
	expectCode(t, "no target", err, codes.Unavailable)

	// Recorded before the response left.
	if n := g.counter(t, "archway_grpc_errors_total", map[string]string{"route": "dead", "grpc_status": "14"}); n != 1 {
		t.Errorf("archway_grpc_errors_total{grpc_status=14} = %v, want 1", n)
	}
	if n := g.counter(t, "archway_requests_total", map[string]string{"route": "dead", "code": "200", "protocol": "HTTP/2"}); n != 1 {
		t.Errorf("archway_requests_total{code=200} = %v, want 1", n)
	}

	// The log is written within its flush interval; the bound only ends a test that would hang.
	var line []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no access log line")
		}
	}
	var entry struct {
		Status     int  `json:"status"`
		GRPCStatus *int `json:"grpc_status"`
	}
	if err := json.Unmarshal(line, &entry); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if entry.Status != 200 || entry.GRPCStatus == nil || *entry.GRPCStatus != 14 {
		t.Fatalf("access log line %s: want status 200 and grpc_status 14", line)
	}
}
