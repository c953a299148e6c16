//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package websocket

import (
	"net"
	"syscall"
)

// socketOf: elsewhere every connection is read through its Read (pumpConn).
func socketOf(net.Conn) syscall.RawConn { return nil }

func (p *pump) readRaw(uintptr) bool { return true }

func (p *pump) readNow(uintptr) bool { return true }
