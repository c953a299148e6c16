package protocol

import "time"

// MaxDeadlineSlack bounds how late a deadline armed through a LazyDeadline may fire.
const MaxDeadlineSlack = 50 * time.Millisecond

// DeadlineSlack is the slack for deadlines that are timeout after the moment they are set: a
// sixteenth of the timeout, at most MaxDeadlineSlack, so a short timeout stays close to exact.
func DeadlineSlack(timeout time.Duration) time.Duration {
	return min(timeout/16, MaxDeadlineSlack)
}

// LazyDeadline tracks one deadline of a socket (read or write) so that a connection serving a
// stream of requests re-arms it about once per slack of passing time instead of once per
// request. Setting a deadline modifies a runtime timer under the descriptor's lock; with a
// request every millisecond on each connection that was several percent of the CPU a proxied
// request costs (nginx skips re-arming a timer that moves by less than 300 ms for the same
// reason). The socket's deadline is armed slack after the one asked for, and a later request
// whose deadline is at most slack before the armed one leaves it alone: a deadline fires no
// earlier than asked and at most slack after it. An earlier deadline, a zero one (none), or one
// past the armed one is always armed.
//
// It is not safe for concurrent use: the connection's owner calls it (the serving goroutine of
// a client connection, the holder of a pooled upstream connection). The zero value is a socket
// with no deadline, as a new one is.
type LazyDeadline struct {
	armed   time.Time // what the socket has; zero: no deadline
	unknown bool      // the socket's deadline was set around this tracker or a set failed
}

// Arm returns the deadline to set on the socket for t, and false when the armed one already
// fires no earlier than t and at most slack after it. The caller sets what Arm returns; when
// that fails, it calls Forget.
func (d *LazyDeadline) Arm(t time.Time, slack time.Duration) (time.Time, bool) {
	if !d.unknown {
		if t.IsZero() {
			if d.armed.IsZero() {
				return t, false
			}
		} else if !d.armed.IsZero() {
			if late := d.armed.Sub(t); late >= 0 && late <= slack {
				return time.Time{}, false
			}
		}
	}
	if !t.IsZero() {
		t = t.Add(slack)
	}
	d.armed, d.unknown = t, false
	return t, true
}

// Set arms t through set (the socket's SetReadDeadline or SetWriteDeadline) when Arm says so,
// and forgets what is armed when that fails.
func (d *LazyDeadline) Set(t time.Time, slack time.Duration, set func(time.Time) error) error {
	at, arm := d.Arm(t, slack)
	if !arm {
		return nil
	}
	err := set(at)
	if err != nil {
		d.Forget()
	}
	return err
}

// Forget records that the socket's deadline is not known any more: the next Arm sets it.
func (d *LazyDeadline) Forget() { d.unknown = true }
