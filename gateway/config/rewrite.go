package config

import (
	"regexp"
	"strconv"
	"strings"
)

// Rewrite replaces the path sent upstream, nginx's "rewrite <regex> <replacement>" without
// flags: when Regex (RE2 syntax) matches the normalised request path, the path becomes
// Replacement with $1, $2 ... (or $name for named groups) filled in from the match. A path that
// does not match is forwarded unchanged. The query string is kept.
type Rewrite struct {
	Regex       string `yaml:"regex"`
	Replacement string `yaml:"replacement"`
}

// replacementRef is a reference as regexp.Expand reads one: the longest run of letters, digits
// and '_' after '$', so "$1x" names a group "1x", not group 1 followed by "x".
var replacementRef = regexp.MustCompile(`\$([A-Za-z0-9_]+)`)

func (v *validator) rewritePath(p string, r *Route) {
	rw := r.Rewrite
	p += ".rewrite"
	if r.Upstream == "" {
		v.errorf(p, "rewrite changes the path sent to an upstream; the route has none")
	}
	if r.StripPrefix != "" || r.AddPrefix != "" {
		v.errorf(p, "rewrite and strip_prefix/add_prefix both change the path; use one")
	}
	if rw.Regex == "" {
		v.errorf(p+".regex", "required, e.g. ^/old/(.*)$")
		return
	}
	re, err := regexp.Compile(rw.Regex)
	if err != nil {
		v.errorf(p+".regex", "%v", err)
		return
	}
	switch {
	case !strings.HasPrefix(rw.Replacement, "/"):
		v.errorf(p+".replacement", "must be a path starting with /, got %q", rw.Replacement)
		return
	case strings.ContainsAny(rw.Replacement, "?# \t\r\n"):
		v.errorf(p+".replacement", "must be a path without '?', '#', spaces or line breaks (the query is kept as sent), got %q", rw.Replacement)
		return
	}
	names := re.SubexpNames()
	for _, m := range replacementRef.FindAllStringSubmatch(rw.Replacement, -1) {
		ref := m[1]
		if n, err := strconv.Atoi(ref); err == nil {
			if n > re.NumSubexp() {
				v.errorf(p+".replacement", "$%s refers to a group the regex does not have (it has %d)", ref, re.NumSubexp())
			}
			continue
		}
		found := false
		for _, name := range names {
			found = found || name == ref
		}
		if !found {
			v.errorf(p+".replacement", "$%s names no group of the regex (a reference runs to the first character that is not a letter, digit or _: put a / or . after $1)", ref)
		}
	}
}
