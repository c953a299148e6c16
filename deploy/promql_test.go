package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// A selector is one vector selector of a PromQL expression: the metric it names and its label
// matchers. The dashboard and alert checks hold every selector to a live /metrics.
type selector struct {
	metric   string
	matchers []matcher
}

type matcher struct{ label, op, value string }

func (s selector) String() string {
	var m []string
	for _, x := range s.matchers {
		m = append(m, fmt.Sprintf("%s%s%q", x.label, x.op, x.value))
	}
	return s.metric + "{" + strings.Join(m, ", ") + "}"
}

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'p' punctuation or operator
	text string
}

// lexPromQL splits an expression into tokens. It knows PromQL's lexical grammar (identifiers
// with colons, three kinds of string, comments, numbers and durations, operators); it does not
// check the grammar, which promtool does.
func lexPromQL(expr string) ([]token, error) {
	var toks []token
	r := []rune(expr)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '#':
			for i < len(r) && r[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(r) && r[j] != c; j++ {
				if r[j] == '\\' && c != '`' && j+1 < len(r) {
					j++
				}
				b.WriteRune(r[j])
			}
			if j >= len(r) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			toks = append(toks, token{'s', b.String()})
			i = j + 1
		case c == '_' || c == ':' || unicode.IsLetter(c):
			j := i
			for j < len(r) && (r[j] == '_' || r[j] == ':' || unicode.IsLetter(r[j]) || unicode.IsDigit(r[j])) {
				j++
			}
			toks = append(toks, token{'i', string(r[i:j])})
			i = j
		case unicode.IsDigit(c) || c == '.':
			j := i
			for j < len(r) && (unicode.IsDigit(r[j]) || unicode.IsLetter(r[j]) || r[j] == '.') {
				j++
			}
			toks = append(toks, token{'n', string(r[i:j])})
			i = j
		default:
			op := string(c)
			if i+1 < len(r) {
				if two := string(r[i : i+2]); slices.Contains([]string{"=~", "!~", "!=", "==", "<=", ">="}, two) {
					op = two
				}
			}
			if !strings.Contains("(){}[],=!~<>+-*/%^@", string(c)) {
				return nil, fmt.Errorf("unexpected %q at %d in %q", c, i, expr)
			}
			toks = append(toks, token{'p', op})
			i += len(op)
		}
	}
	return toks, nil
}

var (
	// Label lists follow these keywords: by (...), without (...), on (...), ...
	grouping = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	// Keywords that are neither metrics nor functions.
	keywords = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
	// Aggregations may put their grouping before the parenthesis: sum by (x) (...).
	aggregations = []string{"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio"}
)

// selectors returns the vector selectors of a PromQL expression.
func selectors(expr string) ([]selector, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	var out []selector
	skipTo := func(i int, open, close string) (int, error) {
		depth := 0
		for ; i < len(toks); i++ {
			if toks[i].kind == 'p' && toks[i].text == open {
				depth++
			}
			if toks[i].kind == 'p' && toks[i].text == close {
				depth--
				if depth == 0 {
					return i, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %s in %q", open, expr)
	}
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == 'p' && t.text == "[":
			j, err := skipTo(i, "[", "]")
			if err != nil {
				return nil, err
			}
			i = j
		case t.kind == 'i' && slices.Contains(grouping, strings.ToLower(t.text)):
			if n := next(i); n.kind == 'p' && n.text == "(" {
				j, err := skipTo(i+1, "(", ")")
				if err != nil {
					return nil, err
				}
				i = j
			}
		case t.kind == 'i' && slices.Contains(keywords, strings.ToLower(t.text)):
		case t.kind == 'i' && (next(i).text == "(" || slices.Contains(aggregations, t.text) && slices.Contains(grouping, next(i).text)):
			// a function or an aggregation
		case t.kind == 'i' || t.kind == 'p' && t.text == "{":
			sel := selector{}
			if t.kind == 'i' {
				sel.metric = t.text
				i++
			}
			if i < len(toks) && toks[i].kind == 'p' && toks[i].text == "{" {
				j, err := skipTo(i, "{", "}")
				if err != nil {
					return nil, err
				}
				inner := toks[i+1 : j]
				for k := 0; k < len(inner); {
					if k+2 >= len(inner) || inner[k+1].kind != 'p' || inner[k+2].kind != 's' {
						return nil, fmt.Errorf("bad label matcher in %q", expr)
					}
					m := matcher{label: inner[k].text, op: inner[k+1].text, value: inner[k+2].text}
					if m.label == "__name__" && m.op == "=" {
						sel.metric = m.value
					} else {
						sel.matchers = append(sel.matchers, m)
					}
					k += 3
					if k < len(inner) && inner[k].text == "," {
						k++
					}
				}
				i = j
			} else {
				i--
			}
			if sel.metric == "" {
				return nil, fmt.Errorf("a selector without a metric name in %q", expr)
			}
			out = append(out, sel)
		}
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string
	}{
		{`up`, `up{}`},
		{`sum by (route) (rate(archway_requests_total{job="archway", code=~"5.."}[5m]))`, `archway_requests_total{job="archway", code=~"5.."}`},
		{`histogram_quantile(0.99, sum by (route, le) (rate(x_bucket{route!="ws"}[5m]))) > 1 and sum by (route) (rate(x_count[5m])) > 1`, `x_bucket{route!="ws"} x_count{}`},
		{`a / on (instance) group_left (version) b offset 5m`, `a{} b{}`},
		{`absent(up{job="archway"} == 1)`, `up{job="archway"}`},
		{`{__name__="ns:rule", x='y\'z'}`, `ns:rule{x="y'z"}`},
		{"max without (pod) (m) # comment naming not_a_metric\n", `m{}`},
		{`count(x == 0) or vector(0)`, `x{}`},
	} {
		sels, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("selectors(%s) = %s, want %s", tc.expr, strings.Join(got, " "), tc.want)
		}
	}
	for _, bad := range []string{`x{job="a"`, `x{job=}`, `"unterminated`, `rate(x[5m)`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%s): no error", bad)
		}
	}
}
