package cors

import (
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
)

func TestPolicyTable(t *testing.T) {
	p := New(&config.CORS{
		Origins: []string{"https://shop.example.com", "https://*.preview.example.com", "http://localhost:5173"},
		Methods: []string{"GET", "POST"},
		Headers: []string{"Authorization", "Content-Type"},
		MaxAge:  config.Duration(90 * time.Second),
	})
	for origin, want := range map[string]bool{
		"https://shop.example.com":              true,
		"http://localhost:5173":                 true,
		"https://a.preview.example.com":         true,
		"https://a.b.preview.example.com":       true,
		"https://preview.example.com":           false,
		"https://.preview.example.com":          false,
		"https://-a.preview.example.com":        false,
		"https://a_b.preview.example.com":       false,
		"https://a/x.preview.example.com":       false,
		"https://evil.com?.preview.example.com": false,
		"http://a.preview.example.com":          false,
		"https://shop.example.com:443":          false,
		"https://SHOP.example.com":              false,
		"https://shop.example.com.evil":         false,
		"null":                                  false,
		"http://localhost:5174":                 false,
	} {
		if got := p.allowsOrigin([]byte(origin)); got != want {
			t.Errorf("allowsOrigin(%q) = %v", origin, got)
		}
	}
	for method, want := range map[string]bool{"GET": true, "POST": true, "PUT": false, "get": false, "": false} {
		if got := p.allowsMethod([]byte(method)); got != want {
			t.Errorf("allowsMethod(%q) = %v", method, got)
		}
	}
	for headers, want := range map[string]bool{
		"":                               true,
		"authorization":                  true,
		"Content-Type, AUTHORIZATION":    true,
		" content-type ,, authorization": true,
		"content-type, x-debug":          false,
		"content-typ":                    false,
	} {
		if got := p.allowsHeaders([]byte(headers)); got != want {
			t.Errorf("allowsHeaders(%q) = %v", headers, got)
		}
	}
	if string(p.maxAge) != "90" || string(p.allowMethod) != "GET, POST" {
		t.Errorf("maxAge %q, allowMethod %q", p.maxAge, p.allowMethod)
	}
	star := New(&config.CORS{Origins: []string{"*"}, Headers: []string{"*"}})
	if !star.allowsOrigin([]byte("https://any.example")) || !star.allowsHeaders([]byte("x-whatever")) || len(star.maxAge) != 0 {
		t.Error(`"*" policy`)
	}
}
