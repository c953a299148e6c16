//go:build linux || darwin || freebsd || netbsd || openbsd

package protocol

import (
	"crypto/tls"
	"net"
	"testing"
)

// SocketUnderTLS finds the socket only under a TLS connection reached and left through
// transparent wrappers: anything that may keep bytes on either side of TLS hides it.
func TestSocketUnderTLS(t *testing.T) {
	server := func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{}) }
	transparent := func(c net.Conn) net.Conn { return transparentWrapper{TransparentTo(c)} }
	opaque := func(c net.Conn) net.Conn { return opaqueWrapper{Passthrough{c}} }
	for _, tc := range []struct {
		name  string
		build func(*net.TCPConn) net.Conn
		found bool
	}{
		{"TLS on the socket", func(s *net.TCPConn) net.Conn { return server(s) }, true},
		{"TLS on transparent wrappers, under transparent wrappers", func(s *net.TCPConn) net.Conn {
			return transparent(transparent(server(transparent(s))))
		}, true},
		{"plain socket: no TLS", func(s *net.TCPConn) net.Conn { return s }, false},
		{"plain socket under a transparent wrapper", func(s *net.TCPConn) net.Conn { return transparent(s) }, false},
		{"TLS on a wrapper that may keep bytes", func(s *net.TCPConn) net.Conn { return server(opaque(s)) }, false},
		{"TLS under a wrapper that may keep bytes", func(s *net.TCPConn) net.Conn { return opaque(server(s)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SocketUnderTLS(tc.build(gatewaySide(t))) != nil; got != tc.found {
				t.Fatalf("found a socket: %v, want %v", got, tc.found)
			}
		})
	}
}

func gatewaySide(t *testing.T) *net.TCPConn {
	server, _ := socketPair(t)
	return server
}
