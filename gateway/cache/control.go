package cache

import (
	"github.com/archway-gateway/archway/gateway/protocol"

	"bytes"
	"strconv"
)

// directives are the Cache-Control directives the cache acts on. Ages are seconds, -1 when
// absent.
type directives struct {
	noStore, noCache, private, mustRevalidate bool
	maxAge, sMaxAge, staleWhileRevalidate     int64
}

// parseCacheControl reads a Cache-Control value (every field line joined with commas). Unknown
// directives are ignored, as RFC 9111 §5.2 requires; a qualified no-cache="f" or private="f" is
// taken as the unqualified one, which is the cautious reading for a shared cache.
func parseCacheControl(v []byte) directives {
	d := directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1}
	for len(v) > 0 {
		var item []byte
		item, v = protocol.NextListItem(v)
		name, arg := item, []byte(nil)
		if i := bytes.IndexByte(item, '='); i >= 0 {
			name, arg = bytes.TrimSpace(item[:i]), bytes.Trim(bytes.TrimSpace(item[i+1:]), `"`)
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
			d.maxAge = seconds(arg)
		case protocol.EqualFold(name, "s-maxage"):
			d.sMaxAge = seconds(arg)
		case protocol.EqualFold(name, "stale-while-revalidate"):
			d.staleWhileRevalidate = seconds(arg)
		}
	}
	return d
}

// seconds parses a delta-seconds value; an invalid one counts as 0 (stale), per RFC 9111 §1.2.2.
func seconds(b []byte) int64 {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return min(n, 1<<31)
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
