package deploy

import (
	"net/url"
	"testing"
)

// TestComposeRabbitMQ: orders and products reach the broker on a shared network with the
// credentials compose gives it, and the plugin Prometheus scrapes is enabled.
func TestComposeRabbitMQ(t *testing.T) {
	p := composeProject(t)
	broker, ok := p.Services["rabbitmq"]
	if !ok {
		t.Fatal("no rabbitmq service")
	}
	env := envOf(broker)
	users := 0
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		raw, ok := envOf(s)["AMQP_URL"]
		if !ok {
			if bin := binaryOf(s); bin == "orders" || bin == "products" {
				t.Errorf("%s has no AMQP_URL: order events would not flow", name)
			}
			continue
		}
		users++
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "amqp" {
			t.Errorf("%s: AMQP_URL %q: %v", name, raw, err)
			continue
		}
		if port := u.Port(); port == "" {
			u.Host += ":5672"
		}
		reach(t, p, s, "AMQP_URL", u.Host)
		pass, _ := u.User.Password()
		if u.User.Username() != env["RABBITMQ_DEFAULT_USER"] || pass != env["RABBITMQ_DEFAULT_PASS"] || pass == "" {
			t.Errorf("%s: AMQP_URL credentials differ from the broker's default user", name)
		}
	}
	if users != 4 {
		t.Errorf("%d services use the broker, want 4 (two orders, two products)", users)
	}
	prom := p.Services["prometheus"]
	reach(t, p, prom, "rabbitmq metrics", "rabbitmq:15692")
}
