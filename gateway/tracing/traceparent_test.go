package tracing

import (
	"math"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"context"
)

func TestParseTraceparent(t *testing.T) {
	cases := []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true},   // random flag: dropped
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", false, false}, // reserved bits in 00
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false, false}, // 00 is exact
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false, false},
		{"", false, false},
	}
	for _, c := range cases {
		tid, sid, flags, ok := ParseTraceparent([]byte(c.in))
		if ok != c.ok || (ok && flags.IsSampled() != c.sampled) {
			t.Errorf("%q: ok %v sampled %v, want %v %v", c.in, ok, flags.IsSampled(), c.ok, c.sampled)
			continue
		}
		if ok {
			out := string(AppendTraceparent(nil, tid, sid, flags))
			want := "00" + c.in[2:53] + "0" + map[bool]string{true: "1", false: "0"}[c.sampled]
			if out != want {
				t.Errorf("%q formats back as %q, want %q", c.in, out, want)
			}
		}
	}
}

// FuzzParseTraceparent holds the parser to the OpenTelemetry SDK's own propagator: a value one
// accepts the other accepts with the same ids and sampled flag, and nothing panics.
func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g")
	f.Fuzz(func(t *testing.T, in string) {
		tid, sid, flags, ok := ParseTraceparent([]byte(in))
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": in}))
		if ok != sc.IsValid() {
			t.Fatalf("%q: ours %v, SDK's %v", in, ok, sc.IsValid())
		}
		if ok && (tid != sc.TraceID() || sid != sc.SpanID() || flags.IsSampled() != sc.IsSampled()) {
			t.Fatalf("%q: ours %s %s %v, SDK's %s %s %v", in, tid, sid, flags, sc.TraceID(), sc.SpanID(), sc.TraceFlags())
		}
	})
}

func TestTraceparentAllocatesNothing(t *testing.T) {
	in := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		tid, sid, flags, _ := ParseTraceparent(in)
		buf = AppendTraceparent(buf[:0], tid, sid, flags)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func TestThreshold(t *testing.T) {
	for _, c := range []struct {
		ratio float64
		want  uint64
	}{{0, 0}, {-1, 0}, {1, math.MaxUint64}, {2, math.MaxUint64}, {0.5, 1 << 63}, {0.99999999999999999, math.MaxUint64}} {
		if got := Threshold(c.ratio); got != c.want {
			t.Errorf("Threshold(%v) = %d, want %d", c.ratio, got, c.want)
		}
	}
	low, high := trace.TraceID{0xff, 15: 0}, trace.TraceID{8: 0xff, 15: 0xff}
	if Sample(low, 0) {
		t.Error("ratio 0 sampled")
	}
	if !Sample(high, math.MaxUint64) {
		t.Error("ratio 1 did not sample")
	}
	// TraceIDRatioBased: the decision is the trace id's, read from its last 8 bytes.
	half := Threshold(0.5)
	if !Sample(low, half) || Sample(high, half) || Sample(trace.TraceID{8: 0x80}, half) || !Sample(trace.TraceID{8: 0x7f, 15: 0xff}, half) {
		t.Error("at ratio 0.5 the decision is not the trace id's")
	}
}
