package config

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     Rate
		interval time.Duration
		err      bool
	}{
		{in: "10/s", want: Rate{10, time.Second}, interval: 100 * time.Millisecond},
		{in: "10r/s", want: Rate{10, time.Second}, interval: 100 * time.Millisecond},
		{in: " 600 / m ", want: Rate{600, time.Minute}, interval: 100 * time.Millisecond},
		{in: "1/h", want: Rate{1, time.Hour}, interval: time.Hour},
		{in: "1000000/s", want: Rate{1000000, time.Second}, interval: time.Microsecond},
		{in: "3/s", want: Rate{3, time.Second}, interval: 333333333},
		{in: "10", err: true},
		{in: "0/s", err: true},
		{in: "-1/s", err: true},
		{in: "1.5/s", err: true},
		{in: "10/d", err: true},
		{in: "2000000/s", err: true},
		{in: "/s", err: true},
	} {
		got, err := ParseRate(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseRate(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if got != tc.want || got.Interval() != tc.interval {
			t.Errorf("ParseRate(%q) = %v (interval %v), want %v (interval %v)", tc.in, got, got.Interval(), tc.want, tc.interval)
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("%q does not round-trip through %q", tc.in, got.String())
		}
	}
}
