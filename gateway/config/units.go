package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time span written in Go syntax ("30s", "1m30s", "250ms"). A bare number is an
// error: "30" could mean seconds or milliseconds, and guessing is how outages start.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 30s, found %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a non-negative duration in Go syntax.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("duration %q has no unit (write %ss or %sms)", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 1m30s)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(v), nil
}

// String renders the duration as Go syntax ("30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML renders the duration as Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Size is a byte count: "16KiB", "50MiB" (powers of 1024), "1MB" (powers of 1000), nginx-style
// "50M" or "16k" (powers of 1024, as client_max_body_size reads them), or a plain number of bytes.
type Size int64

// Bytes returns the size as an int64.
func (s Size) Bytes() int64 { return int64(s) }

func (s *Size) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 16KiB, found %s", kindName(n))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	// Longest suffixes first so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"K", 1 << 10}, {"m", 1 << 20}, {"M", 1 << 20}, {"g", 1 << 30}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses a size with an optional unit.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	num, factor := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "eExXpP_") {
		return 0, fmt.Errorf("invalid size %q (examples: 512, 16KiB, 50MiB, 1MB)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	total := v * float64(factor)
	if total > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if total != math.Trunc(total) {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return Size(total), nil
}

// MarshalYAML renders the size in the largest exact binary unit.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s != 0 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s != 0 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return strconv.FormatInt(int64(s), 10)
}

// Target is one upstream endpoint: "host:port", or {addr: "host:port", weight: 3}.
type Target struct {
	Addr   string `yaml:"addr"`
	Weight int    `yaml:"weight"`
}

func (t *Target) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		t.Addr = n.Value
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			switch key.Value {
			case "addr":
				if val.Kind != yaml.ScalarNode {
					return fmt.Errorf("addr: expected host:port, found %s", kindName(val))
				}
				t.Addr = val.Value
			case "weight":
				w, err := strconv.Atoi(val.Value)
				if err != nil || val.Kind != yaml.ScalarNode {
					return fmt.Errorf("weight: expected a whole number, found %s", kindName(val))
				}
				t.Weight = w
			default:
				return fmt.Errorf("unknown field %q in target%s", key.Value, suggest(key.Value, []string{"addr", "weight"}))
			}
		}
		return nil
	}
	return fmt.Errorf("expected host:port or {addr, weight}, found %s", kindName(n))
}

// MarshalYAML writes the short form when the weight is the default.
func (t Target) MarshalYAML() (any, error) {
	if t.Weight == 1 || t.Weight == 0 {
		return t.Addr, nil
	}
	return map[string]any{"addr": t.Addr, "weight": t.Weight}, nil
}

func (w *WebSocket) decodeNode(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true":
			w.Enabled = true
			return nil
		case "false":
			w.Enabled = false
			return nil
		}
		return fmt.Errorf("expected true, false or {idle_timeout, max_message_bytes, close_grace}, found %q", n.Value)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected true, false or a mapping, found %s", kindName(n))
	}
	w.Enabled = true // a mapping turns upgrades on unless it says enabled: false
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		var err error
		switch key.Value {
		case "enabled":
			if val.Value != "true" && val.Value != "false" {
				err = fmt.Errorf("enabled: expected true or false, found %q", val.Value)
			}
			w.Enabled = val.Value == "true"
		case "idle_timeout":
			err = w.IdleTimeout.decodeNode(val)
		case "max_message_bytes":
			err = w.MaxMessageBytes.decodeNode(val)
		case "close_grace":
			err = w.CloseGrace.decodeNode(val)
		default:
			err = fmt.Errorf("unknown field %q in websocket%s", key.Value, suggest(key.Value, []string{"enabled", "idle_timeout", "max_message_bytes", "close_grace"}))
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key.Value, err)
		}
	}
	return nil
}

// MarshalYAML writes the effective settings.
func (w WebSocket) MarshalYAML() (any, error) {
	type plain WebSocket
	return plain(w), nil
}
