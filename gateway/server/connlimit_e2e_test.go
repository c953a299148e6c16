package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/server"
	"github.com/prometheus/client_golang/prometheus"
)

// clientConn is a keep-alive client connection from a chosen loopback address.
type clientConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialFrom(t *testing.T, from, addr string) *clientConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &clientConn{c: c, br: bufio.NewReader(c)}
}

// get sends one request and reads the answer; closed reports that the gateway closed the
// connection after it.
func (cc *clientConn) get(t *testing.T) (status int, closed bool) {
	t.Helper()
	_ = cc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(cc.c, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(cc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.Close {
		_, err := cc.br.ReadByte()
		return resp.StatusCode, err == io.EOF
	}
	return resp.StatusCode, false
}

func refusedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "archway_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("archway_connections_refused_total{reason=%q} is not exported", reason)
	return 0
}

// TestConnectionCaps: max_connections_per_ip and max_connections answer 503 and close at
// accept, count the refusals, and give a place back when a connection closes.
func TestConnectionCaps(t *testing.T) {
	up := startUpstream(t, "app", nil)
	reg := prometheus.NewRegistry()
	gw := startGateway(t, fmt.Sprintf(`
server: {max_connections: 3, max_connections_per_ip: 2}
admin: {listen: ""}
access_log: {enabled: false}
upstreams: {app: {targets: [%q]}}
routes: [{name: app, match: {path_prefix: /}, upstream: app}]
`, up.Addr), func(o *server.Options) { o.Registerer = reg })

	a1, a2 := dialFrom(t, "127.0.0.1", gw.Addr), dialFrom(t, "127.0.0.1", gw.Addr)
	for _, c := range []*clientConn{a1, a2} {
		if st, _ := c.get(t); st != 200 {
			t.Fatalf("within the caps: %d", st)
		}
	}
	if st, closed := dialFrom(t, "127.0.0.1", gw.Addr).get(t); st != 503 || !closed {
		t.Fatalf("third connection from one address: %d (closed %v), want 503 and closed", st, closed)
	}
	b := dialFrom(t, "127.0.0.2", gw.Addr)
	if st, _ := b.get(t); st != 200 {
		t.Fatalf("another address within max_connections: %d", st)
	}
	if st, closed := dialFrom(t, "127.0.0.3", gw.Addr).get(t); st != 503 || !closed {
		t.Fatalf("fourth connection with max_connections 3: %d (closed %v), want 503 and closed", st, closed)
	}
	if n := refusedCount(t, reg, "max_connections_per_ip"); n != 1 {
		t.Fatalf("refused per ip: %v, want 1", n)
	}
	if n := refusedCount(t, reg, "max_connections"); n != 1 {
		t.Fatalf("refused by max_connections: %v, want 1", n)
	}
	// The connections still open keep working.
	if st, _ := a1.get(t); st != 200 {
		t.Fatalf("an admitted connection after refusals: %d", st)
	}
	// A closed connection gives its place back once the gateway has seen it close: wait for
	// that condition (a refusal counted means it was not there yet).
	_ = a2.c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := dialFrom(t, "127.0.0.1", gw.Addr).get(t)
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection never gave its place back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
