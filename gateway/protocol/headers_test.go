package protocol

import "testing"

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"GET": true, "x-request-id": true, "M-SEARCH": true, "a!#$%&'*+.^_`|~9": true,
		"": false, "GET ": false, "a:b": false, "na\x7fme": false, "(x)": false, "é": false,
	} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
}
