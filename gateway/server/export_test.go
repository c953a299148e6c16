package server

import "time"

// SetCertificateWatchInterval shortens the certificate file poll for a test.
func SetCertificateWatchInterval(d time.Duration) (restore func()) {
	old := certificateWatchInterval
	certificateWatchInterval = d
	return func() { certificateWatchInterval = old }
}
