//go:build !linux

package websocket

import (
	"errors"
	"os"
)

// Elsewhere a tunnel always relays with its two pumps.
type watcher struct{ file *os.File }

var errWatchUnsupported = errors.New("websocket: no epoll here")

func (t *Tunnel) newWatcher() (*watcher, error) { return nil, errWatchUnsupported }

func (t *Tunnel) watch(*watcher) {}

func (p *pump) bindWatch() {}

func (p *pump) writeNow([]byte) (int, bool, error) { return 0, false, errWatchUnsupported }
