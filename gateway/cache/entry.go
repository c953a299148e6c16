package cache

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
)

// Entry is one stored response, immutable once stored (but for its refresh flag): the body is
// handed to fasthttp without copying, so nothing may write to it.
type Entry struct {
	Key    string // the full cache key
	Path   string // the normalised request path, for purges by prefix
	Status int
	Header []KV // response headers to replay, canonical names
	Body   []byte

	StoredAt   int64 // Unix ns the response was received
	InitialAge int64 // seconds: the upstream's Age header
	FreshUntil int64 // Unix ns
	StaleUntil int64 // Unix ns: FreshUntil + stale-while-revalidate, when serving stale is allowed
	ETag       []byte
	LastMod    int64 // Unix seconds of Last-Modified, 0 when absent

	// VaryNames marks a variant index: the upstream varies on these request headers beyond
	// the route's vary list, and the response lives under the key extended with their values.
	VaryNames []string

	refreshing atomic.Bool
}

// KV is a header.
type KV struct{ Key, Value []byte }

// Size is what the entry costs against the budget.
func (e *Entry) Size() int64 {
	n := int64(entryOverhead + len(e.Key) + len(e.Path) + len(e.Body) + len(e.ETag))
	for _, kv := range e.Header {
		n += int64(len(kv.Key) + len(kv.Value) + 48)
	}
	for _, v := range e.VaryNames {
		n += int64(len(v) + 16)
	}
	return n
}

// Age is the entry's age at now, in whole seconds.
func (e *Entry) Age(now int64) int64 {
	return e.InitialAge + max(now-e.StoredAt, 0)/1e9
}

const encodingVersion = 1

// MarshalBinary encodes the entry for the shared Redis tier.
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(e.Key)+len(e.Path)+len(e.Body)+64*len(e.Header))
	b = append(b, encodingVersion)
	for _, v := range []int64{int64(e.Status), e.StoredAt, e.InitialAge, e.FreshUntil, e.StaleUntil, e.LastMod} {
		b = binary.AppendVarint(b, v)
	}
	str := func(s []byte) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	str([]byte(e.Key))
	str([]byte(e.Path))
	str(e.ETag)
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for _, kv := range e.Header {
		str(kv.Key)
		str(kv.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.VaryNames)))
	for _, v := range e.VaryNames {
		str([]byte(v))
	}
	str(e.Body)
	return b, nil
}

var errBadEntry = errors.New("cache: malformed stored entry")

// UnmarshalBinary decodes what MarshalBinary wrote.
func (e *Entry) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != encodingVersion {
		return errBadEntry
	}
	b = b[1:]
	var bad bool
	varint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	uvarint := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	bytes := func() []byte {
		n := uvarint()
		if bad || n > uint64(len(b)) {
			bad = true
			return nil
		}
		v := b[:n:n]
		b = b[n:]
		return v
	}
	e.Status = int(varint())
	e.StoredAt, e.InitialAge, e.FreshUntil, e.StaleUntil, e.LastMod = varint(), varint(), varint(), varint(), varint()
	e.Key, e.Path, e.ETag = string(bytes()), string(bytes()), bytes()
	nh := uvarint()
	if nh > 1024 {
		return errBadEntry
	}
	for i := uint64(0); i < nh && !bad; i++ {
		e.Header = append(e.Header, KV{bytes(), bytes()})
	}
	nv := uvarint()
	if nv > 64 {
		return errBadEntry
	}
	for i := uint64(0); i < nv && !bad; i++ {
		e.VaryNames = append(e.VaryNames, string(bytes()))
	}
	e.Body = bytes()
	if bad || len(b) != 0 {
		return errBadEntry
	}
	return nil
}
