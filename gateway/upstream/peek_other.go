//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package upstream

import "net"

// socketFD: on this platform the kernel is not asked about idle connections; a closed one is
// found when it is used, and the request repeats on a newly dialled connection.
func socketFD(net.Conn) int { return -1 }

func idleConnDead(int) bool { return false }
