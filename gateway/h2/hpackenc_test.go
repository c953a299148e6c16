package h2

import (
	"bytes"
	"strconv"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// FuzzHeadEncoder: whatever the status and fields, the stateless encoder writes a header block
// that an HPACK decoder (x/net's, as clients use) reads back as the same status, the names
// lowercased and the values unchanged, and that leaves the decoder's dynamic table empty.
func FuzzHeadEncoder(f *testing.F) {
	f.Add(200, []byte("Content-Type"), []byte("text/plain"), []byte("x-custom"), []byte(""))
	f.Add(99, []byte("Set-Cookie"), []byte("a=b; Path=/"), []byte("ÄÖ"), []byte("\x00\xff"))
	f.Add(1005, []byte(""), []byte(bytes.Repeat([]byte("v"), 200)), []byte("Date"), []byte("now"))
	f.Add(-7, []byte(bytes.Repeat([]byte("N"), 130)), []byte("127"), []byte("content-length"), []byte("12"))
	f.Fuzz(func(t *testing.T, status int, name1, value1, name2, value2 []byte) {
		var e headEncoder
		block := appendStatus(nil, status)
		block = e.appendField(block, name1, value1)
		block = e.appendField(block, name2, value2)

		var got []hpack.HeaderField
		dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) { got = append(got, f) })
		if _, err := dec.Write(block); err != nil {
			t.Fatalf("status %d, fields %q: %q, %q: %q: the decoder refuses the block: %v", status, name1, value1, name2, value2, err)
		}
		if err := dec.Close(); err != nil {
			t.Fatalf("the block ends inside a field: %v", err)
		}
		want := []hpack.HeaderField{
			{Name: ":status", Value: strconv.Itoa(status)},
			{Name: string(asciiOnly(name1)), Value: string(value1)},
			{Name: string(asciiOnly(name2)), Value: string(value2)},
		}
		if len(got) != len(want) {
			t.Fatalf("decoded %d fields %q, want %q", len(got), got, want)
		}
		for i := range want {
			if got[i].Name != want[i].Name || got[i].Value != want[i].Value || got[i].Sensitive {
				t.Fatalf("field %d decoded as %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// asciiOnly is name with its ASCII letters lowercased, as the encoder does (bytes.ToLower would
// also fold UTF-8 sequences, which the encoder leaves as they are).
func asciiOnly(name []byte) []byte {
	out := make([]byte, len(name))
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
