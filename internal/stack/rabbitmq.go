package stack

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// RabbitMQBinary is the server script of Debian's rabbitmq-server package (make deps installs
// it); /usr/sbin/rabbitmq-server is a wrapper that insists on running as the rabbitmq user.
var RabbitMQBinary = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// rabbitMQDir holds the local broker's node: its HOME (with the Erlang cookie), data and logs.
func (o Options) rabbitMQDir() string { return filepath.Join(o.DataDir, "rabbitmq") }

// AMQPURL is the local broker's URL for the services (guest is allowed from loopback only).
func (o Options) AMQPURL() string { return fmt.Sprintf("amqp://guest:guest@%s/", addr(o.Ports.AMQP)) }

// rabbitMQService is the local broker: one node on loopback, with the Prometheus plugin (its
// /metrics is also the readiness check: plugins start once the broker has booted) and the
// management UI on loopback.
func (o Options) rabbitMQService() Service {
	dir := o.rabbitMQDir()
	return Service{
		Name: "rabbitmq", Binary: RabbitMQBinary, Addr: addr(o.Ports.RabbitMetrics), Health: "/metrics",
		Env: []string{
			"HOME=" + filepath.Join(dir, "home"),
			"RABBITMQ_NODENAME=archway@localhost",
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			fmt.Sprintf("RABBITMQ_NODE_PORT=%d", o.Ports.AMQP),
			fmt.Sprintf("RABBITMQ_DIST_PORT=%d", o.Ports.RabbitDist),
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.config"),
			"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins-expand"),
			"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
			"RABBITMQ_LOGS=-",
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none +sbwtdcpu none +sbwtdio none",
		},
	}
}

// prepareRabbitMQ writes the node's config, plugin list and Erlang cookie (kept between runs).
func (o Options) prepareRabbitMQ() error {
	dir := o.rabbitMQDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	cookie := filepath.Join(home, ".erlang.cookie")
	if _, err := os.Stat(cookie); err != nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		if err := os.WriteFile(cookie, []byte(hex.EncodeToString(b[:])), 0o400); err != nil {
			return fmt.Errorf("rabbitmq cookie: %w", err)
		}
	}
	p := o.Ports
	config := fmt.Sprintf(`[{rabbit, [{tcp_listeners, [{"127.0.0.1", %d}]}]},
 {rabbitmq_management, [{tcp_config, [{ip, "127.0.0.1"}, {port, %d}]}]},
 {rabbitmq_prometheus, [{tcp_config, [{ip, "127.0.0.1"}, {port, %d}]}]}].
`, p.AMQP, p.RabbitManagement, p.RabbitMetrics)
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.config"), []byte(config), 0o600); err != nil {
		return fmt.Errorf("rabbitmq config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_management,rabbitmq_prometheus].\n"), 0o600); err != nil {
		return fmt.Errorf("rabbitmq plugins: %w", err)
	}
	return nil
}
