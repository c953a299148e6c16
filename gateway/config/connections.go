package config

// Connection caps of the public listener, nginx's worker_connections and limit_conn. Without
// them fasthttp would accept 262 144 connections, at about 18 KiB each.
const (
	// DefaultMaxConnections is about 300 MiB of connection buffers, and room for the 10 000 idle
	// keep-alive connections the benchmark holds.
	DefaultMaxConnections = 16384
	// DefaultMaxConnectionsPerIP is off: clients behind one NAT or load balancer share an
	// address, and the cap counts the connection's peer, before trusted_proxies apply.
	DefaultMaxConnectionsPerIP = 0
)

func (s *Server) applyConnectionDefaults() {
	setDefault(&s.MaxConnections, DefaultMaxConnections)
}

func (v *validator) connections() {
	s := &v.c.Server
	if s.MaxConnections < 1 {
		v.errorf("server.max_connections", "must be at least 1, got %d", s.MaxConnections)
	}
	switch {
	case s.MaxConnectionsPerIP < 0:
		v.errorf("server.max_connections_per_ip", "must be 0 (no cap) or more, got %d", s.MaxConnectionsPerIP)
	case s.MaxConnectionsPerIP > s.MaxConnections && s.MaxConnections >= 1:
		v.errorf("server.max_connections_per_ip", "must not exceed server.max_connections (%d), got %d", s.MaxConnections, s.MaxConnectionsPerIP)
	}
}
