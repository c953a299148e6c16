package protocol

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestLazyDeadlineArm(t *testing.T) {
	base := time.Now()
	at := func(d time.Duration) time.Time { return base.Add(d) }
	const slack = 50 * time.Millisecond
	type step struct {
		ask     time.Time
		wantArm bool
		want    time.Time // what the socket gets when armed
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a new socket has none: zero is not armed", []step{{time.Time{}, false, time.Time{}}}},
		{"first deadline is armed slack later", []step{{at(time.Second), true, at(time.Second + slack)}}},
		{"later deadlines within slack are left alone, the next one re-arms", []step{
			{at(time.Second), true, at(time.Second + slack)},
			{at(time.Second + slack/2), false, time.Time{}},
			{at(time.Second + slack), false, time.Time{}},
			{at(time.Second + slack + 1), true, at(time.Second + 2*slack + 1)},
		}},
		{"an earlier deadline is armed at once", []step{
			{at(time.Second), true, at(time.Second + slack)},
			{at(time.Second - 1), true, at(time.Second - 1 + slack)},
		}},
		{"a deadline in the past (an interruption) is armed", []step{
			{at(time.Second), true, at(time.Second + slack)},
			{time.Unix(1, 0), true, time.Unix(1, 0).Add(slack)},
		}},
		{"zero clears, and clearing twice arms once", []step{
			{at(time.Second), true, at(time.Second + slack)},
			{time.Time{}, true, time.Time{}},
			{time.Time{}, false, time.Time{}},
			{at(time.Second), true, at(time.Second + slack)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d LazyDeadline
			for i, s := range tt.steps {
				got, arm := d.Arm(s.ask, slack)
				if arm != s.wantArm || (arm && !got.Equal(s.want)) {
					t.Fatalf("step %d: Arm(%v) = %v, %v; want %v, %v", i, s.ask.Sub(base), got.Sub(base), arm, s.want.Sub(base), s.wantArm)
				}
			}
		})
	}
}

func TestLazyDeadlineForget(t *testing.T) {
	var d LazyDeadline
	t0 := time.Now().Add(time.Second)
	if _, arm := d.Arm(t0, time.Millisecond); !arm {
		t.Fatal("first Arm did not arm")
	}
	d.Forget()
	if _, arm := d.Arm(t0, time.Millisecond); !arm {
		t.Fatal("Arm after Forget did not arm the same deadline again")
	}
	d.Forget()
	if _, arm := d.Arm(time.Time{}, time.Millisecond); !arm {
		t.Fatal("Arm(zero) after Forget did not clear")
	}
}

func TestDeadlineSlack(t *testing.T) {
	for _, tt := range []struct{ timeout, want time.Duration }{
		{0, 0},
		{160 * time.Millisecond, 10 * time.Millisecond},
		{30 * time.Second, MaxDeadlineSlack},
	} {
		if got := DeadlineSlack(tt.timeout); got != tt.want {
			t.Errorf("DeadlineSlack(%v) = %v, want %v", tt.timeout, got, tt.want)
		}
	}
}

// deadlineCounter counts the write deadlines that reach the socket.
type deadlineCounter struct {
	net.Conn
	writes, both atomic.Int32
}

func (c *deadlineCounter) SetWriteDeadline(t time.Time) error {
	c.writes.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

func (c *deadlineCounter) SetDeadline(t time.Time) error {
	c.both.Add(1)
	return c.Conn.SetDeadline(t)
}

type counterListener struct {
	net.Listener
	last chan *deadlineCounter
}

func (l counterListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	dc := &deadlineCounter{Conn: c}
	l.last <- dc
	return dc, nil
}

// TestConnArmsWriteDeadlinesLazily: a client connection's write deadline reaches the socket
// once for a run of responses whose deadlines fall within the slack, and at once for an earlier
// one; after NetConn (someone else may set the socket's deadline) the next one is armed again.
func TestConnArmsWriteDeadlinesLazily(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := Listener{Listener: counterListener{raw, make(chan *deadlineCounter, 1)}, WriteDeadlineSlack: 50 * time.Millisecond}
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	socket := <-ln.Listener.(counterListener).last

	deadline := time.Now().Add(10 * time.Second)
	for i := range 100 {
		if err := c.SetWriteDeadline(deadline.Add(time.Duration(i) * 100 * time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	}
	if n := socket.writes.Load(); n != 1 {
		t.Fatalf("100 write deadlines within 10 ms of each other reached the socket %d times, want 1", n)
	}
	if err := c.SetWriteDeadline(deadline.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := socket.writes.Load(); n != 2 {
		t.Fatalf("an earlier write deadline reached the socket %d times in all, want 2", n)
	}
	_ = c.(*Conn).NetConn()
	if err := c.SetWriteDeadline(deadline.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := socket.writes.Load(); n != 3 {
		t.Fatalf("after NetConn the same deadline reached the socket %d times in all, want 3", n)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if n := socket.writes.Load(); n != 4 {
		t.Fatalf("after SetDeadline a write deadline reached the socket %d times in all, want 4", n)
	}

	// A deadline armed lazily still fires: a write that cannot finish times out.
	if err := c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	for {
		if _, err := c.Write(big); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("write to a client that reads nothing: %v, want a timeout", err)
			}
			break
		}
	}
}
