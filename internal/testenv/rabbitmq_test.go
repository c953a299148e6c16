package testenv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestRabbitMQStartsAndRestarts boots a broker with the Prometheus plugin, reports how long that
// took, and restarts it on the same port with its data (the fault tests stop and start the
// broker under running services). One boot serves every check: boots are slow.
func TestRabbitMQStartsAndRestarts(t *testing.T) {
	r := StartRabbitMQWith(t, RabbitMQOptions{Prometheus: true})
	t.Logf("rabbitmq-server with the Prometheus plugin accepted connections %s after it was started", r.StartupTime)
	if !strings.HasPrefix(r.URL, "amqp://guest:guest@127.0.0.1:") {
		t.Fatalf("URL %q", r.URL)
	}
	declare := func(passive bool) error {
		conn, err := amqp.Dial(r.URL)
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if passive {
			_, err = ch.QueueDeclarePassive("kept", true, false, false, false, nil)
		} else {
			_, err = ch.QueueDeclare("kept", true, false, false, false, nil)
		}
		return err
	}
	if err := declare(false); err != nil {
		t.Fatal(err)
	}
	// Per-queue series, as compose.yaml's broker exports them for the dashboard.
	resp, err := http.Get(r.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `rabbitmq_queue_messages_ready{vhost="/",queue="kept"}`) {
		t.Errorf("no per-queue rabbitmq_queue_messages_ready for queue kept in %s", r.MetricsURL)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", r.Port)
	r.Stop()
	if err := WaitTCP(addr, 50*time.Millisecond); err == nil {
		t.Fatal("the broker still accepts connections after Stop")
	}
	r.Start(t)
	t.Logf("restart took %s", r.StartupTime)
	if err := declare(true); err != nil {
		t.Fatalf("the durable queue did not survive the restart: %v", err)
	}
}
