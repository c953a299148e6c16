package config

import (
	"fmt"
	"strings"
)

// Compression is a route's gzip policy for responses the upstream did not compress.
type Compression struct {
	MinSize Size     `yaml:"min_size"`
	MaxSize Size     `yaml:"max_size"`
	Level   int      `yaml:"level"`
	Types   []string `yaml:"types"`
}

// Compression defaults and bounds. docs/configuration.md lists the same values.
const (
	DefaultCompressMinSize   = Size(1 << 10)
	DefaultCompressMaxSize   = Size(1 << 20)
	DefaultCompressLevel     = 1
	MaxCompressBufferedBytes = Size(64 << 20)
)

// DefaultCompressTypes are the media types gzip applies to when compression.types is left out:
// text formats and their application/* cousins, not images, fonts or event streams.
func DefaultCompressTypes() []string {
	return []string{
		"text/html", "text/css", "text/plain", "text/xml", "text/javascript",
		"application/javascript", "application/json", "application/problem+json", "application/xml",
		"application/rss+xml", "application/atom+xml", "application/manifest+json", "image/svg+xml",
	}
}

func (c *Config) compressionDefaults(p string, r *Route) {
	z := r.Compression
	if !c.written(p + ".compression.min_size") {
		z.MinSize = DefaultCompressMinSize
	}
	setDefault(&z.MaxSize, DefaultCompressMaxSize)
	setDefault(&z.Level, DefaultCompressLevel)
	if z.Types == nil && !c.written(p+".compression.types") {
		z.Types = DefaultCompressTypes()
	}
	for j, t := range z.Types {
		z.Types[j] = strings.ToLower(t)
	}
}

func (v *validator) compression(p string, r *Route) {
	z := r.Compression
	p += ".compression"
	if z.Level < 1 || z.Level > 9 {
		v.errorf(p+".level", "must be between 1 (fastest) and 9 (smallest), got %d", z.Level)
	}
	if z.MaxSize < z.MinSize {
		v.errorf(p+".max_size", "must be at least min_size (%s), got %s", z.MinSize, z.MaxSize)
	}
	if z.MaxSize > MaxCompressBufferedBytes {
		v.errorf(p+".max_size", "must be at most %s (responses are buffered whole to be compressed), got %s", MaxCompressBufferedBytes, z.MaxSize)
	}
	if len(z.Types) == 0 {
		v.errorf(p+".types", "at least one media type is required")
	}
	for i, t := range z.Types {
		if !validMediaType(t) {
			v.errorf(fmt.Sprintf("%s.types[%d]", p, i), "invalid media type %q (examples: application/json, text/*)", t)
		}
	}
}

func validMediaType(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || typ == "" || sub == "" || typ == "*" {
		return false
	}
	return validHeaderName(typ) && (sub == "*" || validHeaderName(sub))
}
