package config

import (
	"runtime"
	"time"
)

// MinWriteAndWait is the shortest re-check delay of server.write_and_wait: shorter, a client's
// ordinary pause between requests would end the wait early, and its read is the one the
// setting saves.
const MinWriteAndWait = Duration(time.Millisecond)

// writeAndWait validates server.write_and_wait: 0 is off (the default); otherwise a keep-alive
// response is written as the connection starts waiting for the next request, and the setting
// is how long that wait lasts before the socket is read anyway (gateway/protocol/wait.go).
func (v *validator) writeAndWait() {
	s := &v.c.Server
	switch d := s.WriteAndWait; {
	case d == 0:
	case runtime.GOOS == "windows" || runtime.GOOS == "plan9":
		v.errorf("server.write_and_wait", "needs a Unix system (a non-blocking socket write); this is %s: leave it out or 0", runtime.GOOS)
	case d < MinWriteAndWait:
		v.errorf("server.write_and_wait", "must be 0 (off) or at least %s, got %s", time.Duration(MinWriteAndWait), time.Duration(d))
	case s.IdleParkAfter > 0 && d >= s.IdleParkAfter:
		v.errorf("server.write_and_wait", "must be shorter than server.idle_park_after (%s), got %s: the wait's shortened deadline would hide the park delay", time.Duration(s.IdleParkAfter), time.Duration(d))
	case s.IdleTimeout > 0 && d >= s.IdleTimeout:
		v.errorf("server.write_and_wait", "must be shorter than server.idle_timeout (%s), got %s", time.Duration(s.IdleTimeout), time.Duration(d))
	}
}
