package server

import (
	"slices"
	"sync"

	"github.com/archway-gateway/archway/gateway/accesslog"
)

// logDrops keeps archway_access_log_dropped_total monotonic across reloads that replace the
// access log (a new output or buffering): a replaced logger's drops are still counted while it
// drains and are folded into retired once it is closed. Only reloads and scrapes touch it; the
// request path counts drops on the logger's own atomic.
type logDrops struct {
	mu       sync.Mutex
	retired  uint64
	draining []*accesslog.Logger
}

// retire starts counting l as draining (replaced, not closed yet).
func (d *logDrops) retire(l *accesslog.Logger) {
	d.mu.Lock()
	d.draining = append(d.draining, l)
	d.mu.Unlock()
}

// closed folds a drained logger's final count into retired.
func (d *logDrops) closed(l *accesslog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := slices.Index(d.draining, l); i >= 0 {
		d.draining = slices.Delete(d.draining, i, i+1)
		d.retired += l.Dropped()
	}
}

// total is every line dropped by this gateway's access logs: live (nil when off), draining and
// closed.
func (d *logDrops) total(live *accesslog.Logger) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.retired
	for _, l := range d.draining {
		if l != live {
			n += l.Dropped()
		}
	}
	if live != nil {
		n += live.Dropped()
	}
	return n
}
