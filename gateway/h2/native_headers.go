package h2

import (
	"errors"
	"strings"

	"github.com/archway-gateway/archway/gateway/protocol"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock is the header block being decoded: a HEADERS frame and its CONTINUATION frames,
// each fragment decoded as it arrives (the Framer reuses the frame's buffer). It does what x/net's
// Framer does with ReadMetaHeaders (field checks, the header list budget, the CONTINUATION
// flood bound), without a frame, a field list and a callback allocated per block: the decoder's
// callback is bound once per connection and the field list is reused. Owned by the reader.
type headerBlock struct {
	id          uint32
	endStream   bool
	hasPriority bool
	priority    http2.PriorityParam
	fields      []hpack.HeaderField
	pseudo      int // the first pseudo fields (the Framer's order check keeps them first)
	sawRegular  bool
	invalid     error
	remain      uint32 // what is left of the header list budget
	truncated   bool
}

// pseudoFields and regularFields split the block's fields.
func (hb *headerBlock) pseudoFields() []hpack.HeaderField  { return hb.fields[:hb.pseudo] }
func (hb *headerBlock) regularFields() []hpack.HeaderField { return hb.fields[hb.pseudo:] }

var (
	errPseudoAfterRegular = errors.New("pseudo-field after a regular field")
	errInvalidFieldName   = errors.New("invalid field name")
	errInvalidFieldValue  = errors.New("invalid field value")
	errPseudoField        = errors.New("unknown, repeated or response pseudo-field")
	errSkippedBlock       = errors.New("continuation of a refused header block")
)

// emit receives each decoded field (hpack.Decoder's callback).
func (c *nconn) emit(hf hpack.HeaderField) {
	hb := &c.hb
	switch {
	case !httpguts.ValidHeaderFieldValue(hf.Value):
		hb.invalid = errInvalidFieldValue
	case strings.HasPrefix(hf.Name, ":"):
		if hb.sawRegular {
			hb.invalid = errPseudoAfterRegular
		}
	default:
		hb.sawRegular = true
		if !validFieldName(hf.Name) {
			hb.invalid = errInvalidFieldName
		}
	}
	if hb.invalid != nil {
		c.hdec.SetEmitEnabled(false)
		return
	}
	size := hf.Size()
	if size > hb.remain {
		// Over the advertised limit: decoding goes on for the table's sake; the request is
		// answered 431 (buildHead).
		c.hdec.SetEmitEnabled(false)
		hb.truncated = true
		hb.remain = 0
		return
	}
	hb.remain -= size
	if !hb.sawRegular {
		hb.pseudo++
	}
	hb.fields = append(hb.fields, hf)
}

// validFieldName reports a lowercase token, as HTTP/2 requires of field names (section 8.2.1).
func validFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return false
		}
	}
	return protocol.IsToken(s)
}

// onHeadersFrame starts a header block.
func (c *nconn) onHeadersFrame(f *http2.HeadersFrame) (http2.ErrCode, bool) {
	hb := &c.hb
	*hb = headerBlock{
		id: f.StreamID, endStream: f.StreamEnded(), hasPriority: f.HasPriority(), priority: f.Priority,
		fields: hb.fields[:0], remain: advertisedHeaderList(c.settings),
	}
	c.hdec.SetEmitEnabled(true)
	return c.decodeFragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// decodeFragment decodes one fragment of the block and, after the last, opens or ends the stream.
func (c *nconn) decodeFragment(frag []byte, ended bool) (http2.ErrCode, bool) {
	hb := &c.hb
	// A fragment far over what is left of the budget, or any after an invalid field, ends the
	// connection: the client is not sending a request the gateway would serve, and decoding
	// an endless CONTINUATION flood would cost CPU for nothing (CVE-2024-27316).
	if int64(len(frag)) > 2*int64(hb.remain) || hb.invalid != nil {
		return http2.ErrCodeProtocol, false
	}
	if _, err := c.hdec.Write(frag); err != nil {
		return http2.ErrCodeCompression, false
	}
	if !ended {
		return 0, true
	}
	if err := c.hdec.Close(); err != nil {
		return http2.ErrCodeCompression, false
	}
	if hb.invalid == nil {
		hb.invalid = checkPseudoFields(hb.pseudoFields())
	}
	if hb.invalid != nil {
		c.mu.Lock()
		if hb.id > c.maxClientID {
			c.maxClientID = hb.id
		}
		c.resetLocked(hb.id, http2.ErrCodeProtocol)
		c.mu.Unlock()
		return 0, true
	}
	return c.onHeaders(hb)
}

// checkPseudoFields refuses unknown and repeated pseudo-fields and a response's :status.
func checkPseudoFields(pf []hpack.HeaderField) error {
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
		default:
			return errPseudoField
		}
		for _, prev := range pf[:i] {
			if prev.Name == hf.Name {
				return errPseudoField
			}
		}
	}
	return nil
}
