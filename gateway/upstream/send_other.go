//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package upstream

import (
	"net"
	"syscall"
)

// rawConn: on this platform every request is flushed and read the ordinary way.
func rawConn(net.Conn) syscall.RawConn { return nil }

func (pc *pconn) awaitAnswer(uintptr) bool { return true }
