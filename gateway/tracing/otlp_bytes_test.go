package tracing

import (
	"bytes"
	"testing"

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
