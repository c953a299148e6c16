package tracing

import (
	"bytes"
	"net/netip"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// TestEncodingIsMinimal: the encoder writes exactly the bytes protobuf's own marshalling writes
// for the message the SDK's exporter sends, not only an equal message: every length is the
// shortest varint (a span under 128 bytes, a value over 16 KiB, a long attribute) and the fields
// are in order. TestExportMatchesSDK holds the decoded message; this holds its encoding.
func TestEncodingIsMinimal(t *testing.T) {
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(sdkRequest(t, "archway"))
	if err != nil {
		t.Fatal(err)
	}
	enc := newEncoder("archway")
	got := enc.appendRequest(nil, sampleRecords())
	if !bytes.Equal(got, want) {
		t.Fatalf("the encoding differs from proto.Marshal's:\n got  %x\n want %x", got, want)
	}
	// Again after a prefix, as the exporter's reused buffer is not always empty in tests of
	// the transports: lengths are patched relative to where the request starts.
	got = enc.appendRequest([]byte("prefix"), sampleRecords())
	if !bytes.Equal(got[len("prefix"):], want) {
		t.Fatal("the encoding depends on what the buffer held before it")
	}
}

// TestRepeatedAddressEncodesAsCopies: an address added twice shares its text in the record, and
// encodes exactly as the same strings added one by one.
func TestRepeatedAddressEncodesAsCopies(t *testing.T) {
	var none *Tracer
	a, b := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")
	shared := none.StartSpan(KindServer, sampleStart)
	copied := none.StartSpan(KindServer, sampleStart)
	for _, s := range []*Span{shared, copied} {
		s.TraceID, s.SpanID = trace.TraceID{1}, trace.SpanID{1}
		s.SetName("GET", "")
	}
	shared.AddAddr("client.address", a)
	shared.AddAddr("network.peer.address", a)
	shared.AddAddr("other", b)
	shared.AddAddr("again", a)
	shared.AddAddr("none", netip.Addr{})
	shared.AddAddr("none.again", netip.Addr{})
	for _, kv := range [][2]string{{"client.address", a.String()}, {"network.peer.address", a.String()}, {"other", b.String()}, {"again", a.String()}, {"none", ""}, {"none.again", ""}} {
		copied.AddString(kv[0], kv[1])
	}
	enc := newEncoder("archway")
	if got, want := enc.appendRequest(nil, []*Span{shared}), enc.appendRequest(nil, []*Span{copied}); !bytes.Equal(got, want) {
		t.Fatalf("repeated addresses encode as\n %x\nwant\n %x", got, want)
	}
	if len(shared.buf) >= len(copied.buf) {
		t.Errorf("the repeated address was copied again: %d bytes of text, as many as %d", len(shared.buf), len(copied.buf))
	}
}
