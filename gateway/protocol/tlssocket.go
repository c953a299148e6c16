package protocol

import (
	"crypto/tls"
	"net"
	"syscall"
)

// SocketUnderTLS returns the socket under c when c is a TLS connection (under transparent
// wrappers only) that is itself on a socket under transparent wrappers only, and nil otherwise.
// What is readable on that socket is records the TLS connection's Read will decrypt, so a
// reader may wait on it for readability and then read through c; it must never read the socket
// itself. A WebSocket tunnel with a wss:// client waits so (websocket.End.Readable).
func SocketUnderTLS(c net.Conn) syscall.RawConn {
	for range 8 {
		switch w := c.(type) {
		case transparentConn:
			c = w.NetConn()
		case interface {
			ConnectionState() tls.ConnectionState
			NetConn() net.Conn
		}:
			return socketBelow(w.NetConn())
		default:
			return nil
		}
	}
	return nil
}
