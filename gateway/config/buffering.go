package config

import (
	"fmt"
	"os"
)

// Response buffering of an upstream, nginx's proxy_buffering: the gateway reads a response
// body over 64 KiB whole from the upstream, up to Memory in memory and the rest into an unlinked
// temporary file, gives the connection back to the pool, and then feeds the client from the
// buffer. A slow client then holds a buffer instead of an upstream connection.
const (
	// DefaultBufferingMemory bounds the in-memory part of one buffered response. 1000 slow
	// readers of large responses hold 256 MiB at most; the rest is on disk.
	DefaultBufferingMemory Size = 256 << 10
	// DefaultBufferingMaxTempFile is nginx's proxy_max_temp_file_size default. A response over
	// memory + max_temp_file streams from the upstream connection as without buffering.
	DefaultBufferingMaxTempFile Size = 1 << 30
)

// Buffering is "buffering: off", "buffering: on", or a mapping of these fields.
type Buffering struct {
	Off         bool   `yaml:"off,omitempty"`
	Memory      Size   `yaml:"memory"`
	MaxTempFile Size   `yaml:"max_temp_file"`
	TempDir     string `yaml:"temp_dir,omitempty"` // "" is the system's (TMPDIR, else /tmp)
}

// decodeShort reads the scalar form; the mapping form decodes field by field.
func (b *Buffering) decodeShort(s string) error {
	switch s {
	case "on", "true":
		b.Off = false
	case "off", "false":
		b.Off = true
	default:
		return fmt.Errorf("expected on, off or {memory, max_temp_file, temp_dir}, found %q", s)
	}
	return nil
}

// MarshalYAML writes the effective settings.
func (b Buffering) MarshalYAML() (any, error) {
	if b.Off {
		return "off", nil
	}
	type plain Buffering
	return plain(b), nil
}

// applyBufferingDefaults fills the bounds; an explicit max_temp_file: 0 keeps bodies over
// memory off disk (they stream, as nginx's proxy_max_temp_file_size 0).
func (u *Upstream) applyBufferingDefaults(c *Config, name string) {
	setDefault(&u.Buffering.Memory, DefaultBufferingMemory)
	if !c.written("upstreams." + name + ".buffering.max_temp_file") {
		u.Buffering.MaxTempFile = DefaultBufferingMaxTempFile
	}
}

func (v *validator) buffering(p string, b *Buffering) {
	p += ".buffering"
	if b.Off {
		return
	}
	if b.Memory < 64<<10 {
		v.errorf(p+".memory", "must be at least 64KiB (smaller bodies are read whole anyway), got %s", b.Memory)
	}
	if b.MaxTempFile < 0 {
		v.errorf(p+".max_temp_file", "must be 0 (no temporary file) or more, got %s", b.MaxTempFile)
	}
	if b.TempDir != "" {
		if fi, err := os.Stat(b.TempDir); err != nil || !fi.IsDir() {
			v.errorf(p+".temp_dir", "%q is not a directory", b.TempDir)
		}
	}
}
