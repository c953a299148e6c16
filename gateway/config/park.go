package config

import (
	"runtime"
	"time"
)

// MinIdleParkAfter is the shortest park delay: shorter, a client's ordinary pause between
// requests would park and wake its connection, a system call or two more per request.
const MinIdleParkAfter = Duration(100 * time.Millisecond)

// DefaultIdleParkAfter is the park delay when server.idle_park_after is left out, on Linux:
// long enough that a client between requests of one page or one exchange never parks (the
// half-load benchmark's connections do at 1 s, a system call or two more per request), short
// enough that a browser's keep-alive connection idle after a page gives its 18 KiB back soon.
// Busy connections never reach it: they cost nothing more (benchmarks.md).
const DefaultIdleParkAfter = Duration(5 * time.Second)

// parkingDefault sets server.idle_park_after when it was left out: DefaultIdleParkAfter where
// parking works (Linux) and fits the other settings (idle_timeout and write_and_wait longer
// than it leave it off), 0 otherwise. Written out, 0 turns parking off.
func (c *Config) parkingDefault() {
	s := &c.Server
	if c.written("server.idle_park_after") || runtime.GOOS != "linux" {
		return
	}
	if d := DefaultIdleParkAfter; s.IdleTimeout > d && s.WriteAndWait < d {
		s.IdleParkAfter = d
	}
}

// parking validates server.idle_park_after: 0 is off; otherwise a keep-alive
// connection idle that long at a request boundary leaves fasthttp's serving for the gateway's
// epoll set (gateway/park) until its next byte or the rest of idle_timeout.
func (v *validator) parking() {
	s := &v.c.Server
	switch d := s.IdleParkAfter; {
	case d == 0:
	case runtime.GOOS != "linux":
		v.errorf("server.idle_park_after", "parking idle connections needs Linux (an epoll set); this is %s: leave it out or 0", runtime.GOOS)
	case d < MinIdleParkAfter:
		v.errorf("server.idle_park_after", "must be 0 (off) or at least %s, got %s", time.Duration(MinIdleParkAfter), time.Duration(d))
	case s.IdleTimeout > 0 && d >= s.IdleTimeout:
		v.errorf("server.idle_park_after", "must be shorter than server.idle_timeout (%s), got %s: a connection idle that long is closed, not parked", time.Duration(s.IdleTimeout), time.Duration(d))
	}
}
