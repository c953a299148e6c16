package server_test

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
)

// h2specXNetFailures are the h2spec cases the x/net/http2 engine fails, each with its reason in
// docs/operations.md ("HTTP/2 conformance").
var h2specXNetFailures = map[string][]string{
	"h2c": {
		"http2/3.5: Sends invalid connection preface",
		"http2/6.5.3: Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE",
		"http2/8.1.2.2: Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"",
		"http2/8.1.2.2: Sends a HEADERS frame that contains the connection-specific header field",
	},
	"h2": {
		"http2/6.5.3: Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE",
		"http2/8.1.2.2: Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"",
		"http2/8.1.2.2: Sends a HEADERS frame that contains the connection-specific header field",
	},
}

// h2specNativeFailures are the ones the native engine fails: only the malformed preface on the
// h2c listener, which never reaches HTTP/2 (the listener hands what is not the preface to
// HTTP/1.1).
var h2specNativeFailures = map[string][]string{
	"h2c": {"http2/3.5: Sends invalid connection preface"},
	"h2":  nil,
}

// h2specKnownFailures are the h2spec cases each engine fails on each listener. The test asserts
// this exact set: a new failure fails it, and so does a case that starts passing (take it off the
// list and out of the docs).
var h2specKnownFailures = map[config.HTTP2Engine]map[string][]string{
	config.HTTP2EngineXNet:   h2specXNetFailures,
	config.HTTP2EngineNative: h2specNativeFailures,
}

// TestH2Spec runs the h2spec conformance suite (RFC 9113 and RFC 7541, built by `make deps`)
// against the gateway's h2c listener and its TLS listener, with each HTTP/2 engine.
func TestH2Spec(t *testing.T) {
	bin := testenv.RequireBinary(t, "h2spec")
	up := startUpstream(t, "app", nil)
	for _, engine := range []config.HTTP2Engine{config.HTTP2EngineXNet, config.HTTP2EngineNative} {
		t.Run(string(engine), func(t *testing.T) {
			g := startH2Gateway(t, fmt.Sprintf("  http2: {engine: %s}", engine), fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, up.Addr))
			for _, tc := range []struct {
				name string
				addr string
				tls  bool
			}{{"h2c", g.plain, false}, {"h2", g.tls, true}} {
				t.Run(tc.name, func(t *testing.T) {
					report := filepath.Join(t.TempDir(), "h2spec.xml")
					args := []string{"-h", "127.0.0.1", "-p", portOf(tc.addr), "-o", "10", "--junit-report", report}
					if tc.tls {
						args = append(args, "-t", "-k")
					}
					out, _ := run(t, bin, args...) // it exits 1 on any failure; the report decides
					failed, total := h2specFailures(t, report)
					if total < 140 {
						t.Fatalf("h2spec ran %d cases (expected the full suite):\n%s", total, out)
					}
					if want := h2specKnownFailures[engine][tc.name]; !slices.Equal(failed, want) {
						t.Errorf("h2spec failures %q, want exactly %q\n%s", failed, want, tail(out, 4000))
					}
				})
			}
		})
	}
}

// h2specFailures reads h2spec's JUnit report: the failing cases by their package and
// description, sorted, and the number of cases run.
func h2specFailures(t *testing.T, path string) (failed []string, total int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	var suites struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Name    string `xml:"name,attr"`
			Cases   []struct {
				Package string    `xml:"package,attr"`
				Name    string    `xml:"classname,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			total++
			if c.Failure != nil || c.Error != nil {
				failed = append(failed, c.Package+": "+c.Name)
			}
		}
	}
	slices.Sort(failed)
	return failed, total
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[strings.LastIndex(s[:len(s)-n], "\n")+1:]
}
