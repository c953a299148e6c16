package config

import (
	"fmt"
	"strings"
)

// Diff returns a unified diff of the effective configurations (secrets redacted), or "" when
// they are equal. The admin API's dry run shows it.
func Diff(old, new *Config) string {
	a := strings.SplitAfter(string(old.Redacted()), "\n")
	b := strings.SplitAfter(string(new.Redacted()), "\n")
	if len(a) > 0 && a[len(a)-1] == "" {
		a = a[:len(a)-1]
	}
	if len(b) > 0 && b[len(b)-1] == "" {
		b = b[:len(b)-1]
	}
	return unifiedDiff(a, b, "running", "proposed", 3)
}

type edit struct {
	op   byte // ' ', '-', '+'
	line string
}

// lineEdits computes a shortest edit script by longest common subsequence. Configurations are
// hundreds of lines, so the quadratic table is small.
func lineEdits(a, b []string) []edit {
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []edit
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, edit{' ', a[i]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, edit{'-', a[i]})
			i++
		default:
			out = append(out, edit{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, edit{'-', a[i]})
	}
	for ; j < m; j++ {
		out = append(out, edit{'+', b[j]})
	}
	return out
}

func unifiedDiff(a, b []string, nameA, nameB string, context int) string {
	edits := lineEdits(a, b)
	changed := false
	for _, e := range edits {
		if e.op != ' ' {
			changed = true
			break
		}
	}
	if !changed {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", nameA, nameB)
	// Walk the edits, emitting hunks of changes with up to `context` unchanged lines around.
	for start := 0; start < len(edits); {
		for start < len(edits) && edits[start].op == ' ' {
			start++
		}
		if start == len(edits) {
			break
		}
		lo := max(start-context, 0)
		hi := start
		for last := start; hi < len(edits); hi++ {
			if edits[hi].op != ' ' {
				last = hi
			} else if hi-last > 2*context {
				hi = last + context + 1
				break
			}
		}
		hi = min(hi, len(edits))
		aLine, bLine := 1, 1
		for _, e := range edits[:lo] {
			if e.op != '+' {
				aLine++
			}
			if e.op != '-' {
				bLine++
			}
		}
		aCount, bCount := 0, 0
		for _, e := range edits[lo:hi] {
			if e.op != '+' {
				aCount++
			}
			if e.op != '-' {
				bCount++
			}
		}
		fmt.Fprintf(&sb, "@@ -%d,%d +%d,%d @@\n", aLine, aCount, bLine, bCount)
		for _, e := range edits[lo:hi] {
			sb.WriteByte(e.op)
			sb.WriteString(e.line)
			if !strings.HasSuffix(e.line, "\n") {
				sb.WriteByte('\n')
			}
		}
		start = hi
	}
	return sb.String()
}
