//go:build !linux

package app

import "time"

// SetTimerSlack: timer slack is a Linux setting; elsewhere the gateway leaves timers alone.
func SetTimerSlack(time.Duration) error { return nil }
