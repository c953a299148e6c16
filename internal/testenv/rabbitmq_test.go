package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRabbitMQStartsAndRestarts boots a broker, reports how long that took, and restarts it on
// the same port (the fault tests stop and start the broker under running services).
func TestRabbitMQStartsAndRestarts(t *testing.T) {
	r := StartRabbitMQ(t)
	t.Logf("rabbitmq-server accepted connections %s after it was started", r.StartupTime)
	if !strings.HasPrefix(r.URL, "amqp://guest:guest@127.0.0.1:") {
		t.Fatalf("URL %q", r.URL)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", r.Port)
	r.Stop()
	if err := WaitTCP(addr, 50*time.Millisecond); err == nil {
		t.Fatal("the broker still accepts connections after Stop")
	}
	r.Start(t)
	t.Logf("restart took %s", r.StartupTime)
	if err := WaitTCP(addr, time.Second); err != nil {
		t.Fatal(err)
	}
}
