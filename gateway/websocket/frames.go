// Package websocket relays an upgraded WebSocket connection between a client and an upstream.
// It does not terminate the protocol: bytes pass through untouched. It does follow the frame
// structure (RFC 6455, section 5.2) in both directions, which lets it enforce a maximum message
// size and inject close frames at frame boundaries, where they cannot corrupt a frame in flight.
//
// The package imports no other Archway package.
package websocket

import (
	"encoding/binary"
	"errors"
)

// Close codes the gateway sends (RFC 6455, section 7.4.1).
const (
	CloseGoingAway       uint16 = 1001 // the route or target went away, or the gateway is stopping
	CloseProtocolError   uint16 = 1002
	CloseMessageTooBig   uint16 = 1009
	closeFrameMaxPayload        = 125
)

var (
	// ErrMessageTooBig: a message exceeds the route's maximum message size.
	ErrMessageTooBig = errors.New("websocket message over max_message_bytes")
	// ErrBadFrame: the byte stream is not a sequence of valid frame headers.
	ErrBadFrame = errors.New("malformed websocket frame")
)

// frameScanner follows frame boundaries in one direction of a connection. Feed it the bytes as
// they pass; it reports how many can be forwarded. It never consumes an incomplete frame header:
// the caller holds those bytes back and feeds them again with what follows, so everything
// forwarded ends at a frame boundary or inside a payload, never inside a header. Not safe for
// concurrent use; one per direction.
type frameScanner struct {
	masked   bool  // frames in this direction must be masked (client to server)
	maxMsg   int64 // 0: no limit
	payload  int64 // payload bytes left in the current frame
	msgBytes int64 // payload bytes of the current (possibly fragmented) data message
}

func newFrameScanner(masked bool, maxMsg int64) frameScanner {
	return frameScanner{masked: masked, maxMsg: maxMsg}
}

// atBoundary reports whether the bytes forwarded so far end at a frame boundary.
func (s *frameScanner) atBoundary() bool { return s.payload == 0 }

// feed advances over b and returns how many of its bytes may be forwarded: all of them; or fewer
// with a nil error when b ends inside a frame header (the caller keeps b[n:] and feeds it again
// with more bytes); or fewer with an error when the frame starting at b[n] breaks a rule.
func (s *frameScanner) feed(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		if s.payload > 0 {
			n := min(int64(len(b)-i), s.payload)
			s.payload -= n
			i += int(n)
			continue
		}
		if len(b)-i < 2 {
			return i, nil
		}
		hl := headerLen(b[i+1])
		if len(b)-i < hl {
			return i, nil
		}
		if err := s.header(b[i : i+hl]); err != nil {
			return i, err
		}
		i += hl
	}
	return len(b), nil
}

func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// header validates a complete frame header and accounts for its payload.
func (s *frameScanner) header(h []byte) error {
	b0, b1 := h[0], h[1]
	fin, opcode := b0&0x80 != 0, b0&0x0F
	if b0&0x70 != 0 && opcode >= 8 {
		return ErrBadFrame // extensions never apply to control frames
	}
	if (b1&0x80 != 0) != s.masked {
		return ErrBadFrame
	}
	var length int64
	switch l := b1 & 0x7F; l {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		v := binary.BigEndian.Uint64(h[2:10])
		if v>>63 != 0 {
			return ErrBadFrame
		}
		length = int64(v)
	default:
		length = int64(l)
	}
	switch {
	case opcode >= 8: // control: ping, pong, close
		if length > closeFrameMaxPayload || !fin || opcode > 0xA {
			return ErrBadFrame
		}
	case opcode == 1 || opcode == 2: // text, binary: a new message
		s.msgBytes = 0
		fallthrough
	case opcode == 0: // continuation
		if s.maxMsg > 0 && s.msgBytes+length > s.maxMsg {
			return ErrMessageTooBig
		}
		s.msgBytes += length
	default:
		return ErrBadFrame // reserved opcodes 3-7
	}
	s.payload = length
	return nil
}

// closeFrame builds a close frame with code. Frames towards a server are masked; the mask key
// is fixed because the frame carries no data that masking would protect.
func closeFrame(code uint16, masked bool) []byte {
	if !masked {
		return []byte{0x88, 0x02, byte(code >> 8), byte(code)}
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	return []byte{0x88, 0x82, key[0], key[1], key[2], key[3], byte(code>>8) ^ key[0], byte(code) ^ key[1]}
}
