// Package docs_test checks the project's Markdown as a reader follows it: every relative link
// names a file that exists, and every #fragment a heading of that file, as GitHub renders it.
package docs_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The pages a reader starts from, relative to this directory; every Markdown file under docs/
// is checked too.
var entryPages = []string{"../README.md", "../DEVELOPERS.md"}

var (
	linkRE   = regexp.MustCompile(`\]\(([^()\s]*(?:\([^()\s]*\)[^()\s]*)*)\)`)
	inlineRE = regexp.MustCompile("`[^`]*`")
	headRE   = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	mdLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// TestRelativeLinksResolve follows every relative link and fragment in the docs.
func TestRelativeLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, entryPages...)
	anchors := map[string]map[string]bool{} // file → its heading slugs
	slugsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := headingSlugs(t, path)
		anchors[path] = a
		return a
	}
	checked := 0
	for _, page := range pages {
		for _, l := range relativeLinks(t, page) {
			target, fragment, _ := strings.Cut(l.target, "#")
			file := page
			if target != "" {
				file = filepath.Join(filepath.Dir(page), target)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s:%d: link to %s: no such file", page, l.line, l.target)
					continue
				}
			}
			checked++
			if fragment == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			if !slugsOf(file)[fragment] {
				t.Errorf("%s:%d: link to %s: %s has no heading with that anchor", page, l.line, l.target, file)
			}
		}
	}
	t.Logf("%d relative links checked", checked)
	if checked < 100 {
		// the docs hold several hundred; far fewer means the link pattern broke
		t.Fatalf("only %d relative links checked: the scanner no longer finds them", checked)
	}
}

type link struct {
	target string
	line   int
}

// relativeLinks lists the links of a Markdown file outside code, leaving out absolute URLs.
func relativeLinks(t *testing.T, path string) []link {
	var links []link
	forEachProseLine(t, path, func(n int, line string) {
		line = inlineRE.ReplaceAllString(line, "")
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links = append(links, link{target, n})
		}
	})
	return links
}

// headingSlugs returns the anchors GitHub gives the headings of a Markdown file.
func headingSlugs(t *testing.T, path string) map[string]bool {
	slugs := map[string]bool{}
	seen := map[string]int{}
	forEachProseLine(t, path, func(_ int, line string) {
		m := headRE.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			slugs[s+"-"+itoa(n)] = true
		} else {
			slugs[s] = true
		}
		seen[s]++
	})
	return slugs
}

// slug is GitHub's anchor for a heading's text: link targets and markup dropped, lower case,
// letters, digits, hyphens and underscores kept, spaces made hyphens.
func slug(heading string) string {
	heading = mdLinkRE.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// forEachProseLine calls fn with each line of a Markdown file outside fenced code blocks.
func forEachProseLine(t *testing.T, path string, fn func(n int, line string)) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	fenced := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			fn(n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
