package server

import "time"

// SetCertificateWatchInterval shortens the certificate file poll for a test.
func SetCertificateWatchInterval(d time.Duration) (restore func()) {
	old := certificateWatchInterval
	certificateWatchInterval = d
	return func() { certificateWatchInterval = old }
}

// ACMEManagersRunning counts the listeners' certificate managers whose work has not ended.
func (g *Gateway) ACMEManagersRunning() int {
	n := 0
	for _, rt := range g.listeners {
		if rt.tls == nil {
			continue
		}
		if m := rt.tls.Load().ACME; m != nil {
			select {
			case <-m.Done():
			default:
				n++
			}
		}
	}
	return n
}
