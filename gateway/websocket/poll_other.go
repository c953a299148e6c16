//go:build !linux

package websocket

import (
	"context"
	"errors"
)

// Poller needs epoll: elsewhere every tunnel direction is a pump on a goroutine of its own.
type Poller struct{ done chan struct{} }

// NewPoller fails here: tunnels then relay with their two pumps.
func NewPoller(context.Context) (*Poller, error) {
	return nil, errors.New("websocket: waiting on idle tunnels needs Linux (epoll)")
}

func (pl *Poller) Done() <-chan struct{} { return pl.done }
func (pl *Poller) Armed() int            { return 0 }
func (pl *Poller) arm(*pump) bool        { return false }
func (pl *Poller) claim(*pump) bool      { return false }
func (pl *Poller) forget(*pump)          {}
