//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package protocol

import (
	"net"
	"syscall"
)

// socketBelow: on this platform every response is written the ordinary way.
func socketBelow(net.Conn) syscall.RawConn { return nil }

func (c *Conn) awaitRequest(uintptr) bool { return true }
