package cache

import (
	"github.com/archway-gateway/archway/gateway/protocol"

	"bytes"
	"time"
)

// directives are the cache directives the cache acts on. Ages are seconds, -1 when absent.
type directives struct {
	noStore, noCache, private, mustRevalidate bool
	maxAge, sMaxAge, staleWhileRevalidate     int64
	staleIfError                              int64
}

// parseCacheControl reads a Cache-Control value (every field line joined with commas). Unknown
// directives are ignored, as RFC 9111 §5.2 requires; a qualified no-cache="f" or private="f" is
// taken as the unqualified one, which is the cautious reading for a shared cache.
func parseCacheControl(v []byte) directives {
	d, _ := parseDirectives(v, false)
	return d
}

// parseTargeted reads a targeted cache-control field (CDN-Cache-Control, RFC 9213, or the
// gateway's own Archway-Cache-Control). Such a field is a Structured Fields dictionary; one that
// does not parse is ignored as if absent (RFC 9213 §2.1), so ok is false for a malformed value:
// a numeric directive whose argument is not an integer, or an empty member.
func parseTargeted(v []byte) (directives, bool) {
	if len(bytes.TrimSpace(v)) == 0 {
		return directives{}, false
	}
	return parseDirectives(v, true)
}

func parseDirectives(v []byte, strict bool) (directives, bool) {
	d := directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		item = bytes.TrimSpace(item)
		if len(item) == 0 {
			if strict {
				return d, false
			}
			continue
		}
		name, arg, hasArg := item, []byte(nil), false
		if i := bytes.IndexByte(item, '='); i >= 0 {
			name, arg, hasArg = bytes.TrimSpace(item[:i]), bytes.TrimSpace(item[i+1:]), true
			if !strict {
				arg = bytes.Trim(arg, `"`)
			}
		}
		bad := false
		delta := func() int64 {
			n, ok := parseDelta(arg)
			if !ok {
				bad = true
				return 0 // an invalid delta-seconds counts as 0 (stale), RFC 9111 §1.2.2
			}
			return n
		}
		switch {
		case protocol.EqualFold(name, "no-store"):
			d.noStore = true
		case protocol.EqualFold(name, "no-cache"):
			d.noCache = true
		case protocol.EqualFold(name, "private"):
			d.private = true
		case protocol.EqualFold(name, "must-revalidate"), protocol.EqualFold(name, "proxy-revalidate"):
			d.mustRevalidate = true
		case protocol.EqualFold(name, "max-age"):
			d.maxAge = delta()
		case protocol.EqualFold(name, "s-maxage"):
			d.sMaxAge = delta()
		case protocol.EqualFold(name, "stale-while-revalidate"):
			d.staleWhileRevalidate = delta()
		case protocol.EqualFold(name, "stale-if-error"):
			d.staleIfError = delta()
		}
		if strict && (bad || (hasArg && len(arg) == 0)) {
			return d, false
		}
	}
	return d, true
}

// maxDelta caps every lifetime (about 68 years), so adding it to a Unix-nanosecond clock
// cannot overflow.
const maxDelta = 1 << 31

// parseDelta parses delta-seconds: digits only (RFC 9111 §1.2.2), capped at maxDelta.
func parseDelta(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

// parseAge reads an Age value (every line joined). A list uses its first member (RFC 9111
// §5.1); ok is false when that member is not a non-negative integer. Callers treat an Age they
// cannot read as "too old": it must never make a stale response look fresh.
func parseAge(v []byte) (int64, bool) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return parseDelta(bytes.TrimSpace(v))
}

// heuristicStatus are the statuses RFC 9110 §15.1 lets a cache store without explicit
// freshness; the route's ttl is their lifetime. Others are stored only with max-age or s-maxage.
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// etagMatches reports whether an If-None-Match value matches etag by the weak comparison.
func etagMatches(inm, etag []byte) bool {
	if len(etag) == 0 {
		return false
	}
	inm = bytes.TrimSpace(inm)
	if string(inm) == "*" {
		return true
	}
	want := bytes.TrimPrefix(etag, []byte("W/"))
	for len(inm) > 0 {
		var tag []byte
		tag, inm = protocol.NextListItem(inm)
		tag = bytes.TrimPrefix(tag, []byte("W/"))
		if bytes.Equal(tag, want) {
			return true
		}
	}
	return false
}

var (
	dayNames   = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDays   = [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	monthNames = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseHTTPDate parses an HTTP-date strictly (RFC 9110 §5.6.7): IMF-fixdate
// ("Sun, 06 Nov 1994 08:49:37 GMT"), or one of the obsolete rfc850-date
// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime-date ("Sun Nov  6 08:49:37 1994") forms, with
// exactly the spacing and digits the grammar gives. It returns Unix seconds, which hold any
// year the grammar can write (Unix nanoseconds end in 2262). now resolves rfc850's two-digit
// year: one more than 50 years ahead means the century before.
func parseHTTPDate(b []byte, now int64) (int64, bool) {
	b = bytes.TrimSpace(b)
	var day, month, year, hh, mm, ss int
	var ok bool
	switch {
	case len(b) == 29 && b[3] == ',': // IMF-fixdate
		if !isDayName(b[:3], dayNames[:]) || b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || string(b[25:]) != " GMT" {
			return 0, false
		}
		day, ok = digits(b[5:7])
		if !ok {
			return 0, false
		}
		if month, ok = monthOf(b[8:11]); !ok {
			return 0, false
		}
		if year, ok = digits(b[12:16]); !ok {
			return 0, false
		}
		if hh, mm, ss, ok = clock(b[17:25]); !ok {
			return 0, false
		}
	case len(b) == 24 && b[3] == ' ' && b[7] == ' ': // asctime-date
		if !isDayName(b[:3], dayNames[:]) || b[10] != ' ' || b[19] != ' ' {
			return 0, false
		}
		if month, ok = monthOf(b[4:7]); !ok {
			return 0, false
		}
		d := b[8:10]
		if d[0] == ' ' {
			d = d[1:]
		}
		if day, ok = digits(d); !ok {
			return 0, false
		}
		if hh, mm, ss, ok = clock(b[11:19]); !ok {
			return 0, false
		}
		if year, ok = digits(b[20:24]); !ok {
			return 0, false
		}
	default: // rfc850-date
		comma := bytes.IndexByte(b, ',')
		if comma < 0 || !isDayName(b[:comma], longDays[:]) {
			return 0, false
		}
		r := b[comma:]
		if len(r) != 24 || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' || string(r[20:]) != " GMT" {
			return 0, false
		}
		if day, ok = digits(r[2:4]); !ok {
			return 0, false
		}
		if month, ok = monthOf(r[5:8]); !ok {
			return 0, false
		}
		if year, ok = digits(r[9:11]); !ok {
			return 0, false
		}
		if hh, mm, ss, ok = clock(r[12:20]); !ok {
			return 0, false
		}
		nowYear := time.Unix(now/1e9, 0).UTC().Year()
		year += nowYear / 100 * 100
		if year > nowYear+50 {
			year -= 100
		}
	}
	if day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hh, mm, min(ss, 59), 0, time.UTC)
	if t.Day() != day { // 31 Feb and the like
		return 0, false
	}
	return t.Unix(), true
}

func isDayName(b []byte, names []string) bool {
	for _, n := range names {
		if string(b) == n {
			return true
		}
	}
	return false
}

func monthOf(b []byte) (int, bool) {
	for i, n := range monthNames {
		if string(b) == n {
			return i + 1, true
		}
	}
	return 0, false
}

// digits parses a fixed-width run of ASCII digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}

// clock parses "hh:mm:ss".
func clock(b []byte) (hh, mm, ss int, ok bool) {
	if len(b) != 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	var ok1, ok2, ok3 bool
	hh, ok1 = digits(b[0:2])
	mm, ok2 = digits(b[3:5])
	ss, ok3 = digits(b[6:8])
	return hh, mm, ss, ok1 && ok2 && ok3
}
