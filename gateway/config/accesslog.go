package config

import "time"

// Access log buffering defaults, as nginx's access_log buffer= and flush=.
const (
	DefaultAccessLogBuffer = Size(64 << 10)
	DefaultAccessLogFlush  = Duration(time.Second)
	// MinAccessLogBuffer is the smallest buffer: a line longer than a buffer is dropped.
	MinAccessLogBuffer = Size(4 << 10)
	// maxAccessLogBuffer keeps the four buffers' memory sane and offsets in 32 bits.
	maxAccessLogBuffer = Size(64 << 20)
)

func (a *AccessLog) setDefaults() {
	setDefault(&a.Buffer, DefaultAccessLogBuffer)
	setDefault(&a.Flush, DefaultAccessLogFlush)
}

func (v *validator) accessLogBuffering() {
	a := &v.c.AccessLog
	if a.Buffer < MinAccessLogBuffer || a.Buffer > maxAccessLogBuffer {
		v.errorf("access_log.buffer", "must be between 4KiB and 64MiB")
	}
	if a.Flush <= 0 {
		v.errorf("access_log.flush", "must be positive")
	}
}
