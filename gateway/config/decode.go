package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Position is a place in the configuration source, 1-based like editors count.
type Position struct {
	Line   int
	Column int
}

// nodeDecoder is implemented by types whose YAML form is not a plain struct, string or number
// (a target written as "host:port" or as {addr, weight}, a size, a duration, a rate).
// decodeNode receives the node with environment references already expanded in its scalars.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// decoder turns a yaml.Node tree into config structs strictly: unknown fields, duplicate keys and
// wrongly typed values are errors, and every error carries the node's position and field path.
// It keeps going after an error so one run reports every problem.
type decoder struct {
	errs      *ErrorList
	positions map[string]Position
	lookupEnv func(string) (string, bool)
	// keepSecrets maps field paths to the running configuration's secrets: a secret written
	// as "[redacted]" (as GET /config shows it) keeps the running value.
	keepSecrets map[string]string
}

var secretType = reflect.TypeFor[Secret]()

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs.add(Position{n.Line, n.Column}, path, fmt.Sprintf(format, args...))
}

// expand replaces ${NAME} and ${NAME:-default} with environment values; "$$" is a literal "$".
// A name that is not set expands to the empty string, as in docker compose.
func (d *decoder) expand(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated environment reference in %q", s)
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		val, ok := d.lookupEnv(name)
		if (!ok || val == "") && hasDef {
			val = def
		}
		b.WriteString(val)
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

// shortFormDecoder is implemented by structs that also accept a one-word form ("redirects:
// keep"); a mapping decodes field by field like any struct.
type shortFormDecoder interface {
	decodeShort(s string) error
}

var shortFormDecoderType = reflect.TypeFor[shortFormDecoder]()

// decode fills v (addressable) from n. path names the field for errors ("routes[2].upstream").
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.positions[path] = Position{n.Line, n.Column}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an explicit null leaves the zero value, which defaulting fills in
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.Addr().Type().Implements(nodeDecoderType) {
		if n.Kind == yaml.ScalarNode {
			expanded, err := d.expand(n.Value)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			copied := *n
			copied.Value = expanded
			n = &copied
		}
		if err := v.Addr().Interface().(nodeDecoder).decodeNode(n); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && v.Kind() == reflect.Struct && v.Addr().Type().Implements(shortFormDecoderType) {
		s, err := d.expand(n.Value)
		if err == nil {
			err = v.Addr().Interface().(shortFormDecoder).decodeShort(s)
		}
		if err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		d.decodeScalar(n, v, path)
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "this value"
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected a %s, found %s", scalarKindName(v.Kind()), kindName(n))
		return
	}
	s, err := d.expand(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if v.Type() == secretType && s == redacted {
			if kept, ok := d.keepSecrets[path]; ok {
				s = kept
			}
		}
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || (s != "true" && s != "false") {
			d.fail(n, path, "expected true or false, found %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			d.fail(n, path, "expected a whole number, found %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.fail(n, path, "expected a number, found %q", s)
			return
		}
		v.SetFloat(f)
	}
}

func scalarKindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "number"
	}
	return "string"
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		fieldPath := joinPath(path, name)
		if seen[name] {
			d.fail(key, fieldPath, "duplicate field %q", name)
			continue
		}
		seen[name] = true
		idx, ok := fields[name]
		if !ok {
			d.fail(key, fieldPath, "unknown field %q%s", name, suggest(name, sortedKeys(fields)))
			continue
		}
		d.decode(val, v.Field(idx), fieldPath)
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		entryPath := joinPath(path, name)
		if v.MapIndex(reflect.ValueOf(name)).IsValid() {
			d.fail(key, entryPath, "duplicate key %q", name)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, entryPath)
		v.SetMapIndex(reflect.ValueOf(name), elem)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, found %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// structFields maps yaml tag names to field indexes. Fields tagged "-" are not configurable.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		m[tag] = i
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest returns ` (did you mean "x"?)` when a known name is a likely typo of name.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(name, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" || bestDist > len(name)/2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// CIDR is an address prefix written "10.0.0.0/8"; a bare address means a single host.
type CIDR struct{ netip.Prefix }

func (c *CIDR) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a CIDR such as 10.0.0.0/8, found %s", kindName(n))
	}
	p, err := parseCIDR(n.Value)
	if err != nil {
		return err
	}
	c.Prefix = p
	return nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// MarshalYAML renders the prefix in its canonical form.
func (c CIDR) MarshalYAML() (any, error) { return c.String(), nil }

// Secret is a string that is never printed: the admin API and logs show "[redacted]".
type Secret string

const redacted = "[redacted]"

// MarshalYAML redacts non-empty secrets.
func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return redacted, nil
}

// String redacts the secret so %v never leaks it.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func lookupEnvDefault(name string) (string, bool) { return os.LookupEnv(name) }
