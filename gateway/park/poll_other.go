//go:build !linux

package park

import "time"

// poller: parking needs epoll; config refuses server.idle_park_after elsewhere, and New fails.
type poller struct{}

type event struct {
	fd                         int32
	key                        uint32
	wakeup, hangup, peerClosed bool
}

func newPoller() (*poller, error)                        { return nil, ErrUnsupported }
func (*poller) add(int32, uint32) error                  { return ErrUnsupported }
func (*poller) remove(int32)                             {}
func (*poller) wait([]event, time.Duration) (int, error) { return 0, ErrUnsupported }
func (*poller) pending(int32) bool                       { return false }
func (*poller) wake()                                    {}
func (*poller) close()                                   {}
