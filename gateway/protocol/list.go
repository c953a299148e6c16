package protocol

// NextListItem splits the first item off a comma-separated header value (RFC 9110, section
// 5.6.1): item is trimmed of spaces and tabs, rest is what follows its comma. Empty items
// ("a,,b", a trailing comma) come back empty, for the caller to skip. Commas inside quoted
// strings are not special. It allocates nothing:
//
//	for len(v) > 0 {
//		var item []byte
//		item, v = protocol.NextListItem(v)
//		...
//	}
func NextListItem(v []byte) (item, rest []byte) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	item = v[:i]
	if i < len(v) {
		rest = v[i+1:]
	}
	for len(item) > 0 && (item[0] == ' ' || item[0] == '\t') {
		item = item[1:]
	}
	for len(item) > 0 && (item[len(item)-1] == ' ' || item[len(item)-1] == '\t') {
		item = item[:len(item)-1]
	}
	return item, rest
}
