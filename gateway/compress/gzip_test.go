package compress

import (
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/valyala/fasthttp"
)

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"gzip":                        true,
		"GZIP":                        true,
		"x-gzip":                      true,
		"gzip, deflate, br":           true,
		"br;q=1.0, gzip;q=0.5":        true,
		"gzip;q=0":                    false,
		"gzip; q=0.000":               false,
		"gzip;q=0.001":                true,
		"*":                           true,
		"*;q=0":                       false,
		"*, gzip;q=0":                 false,
		"gzip;q=0, *":                 false,
		"identity":                    false,
		"br, zstd":                    false,
		"":                            false,
		"gzipx":                       false,
		"deflate;q=0.5, gzip;level=1": true,
	} {
		if got := AcceptsGzip([]byte(v)); got != want {
			t.Errorf("AcceptsGzip(%q) = %v", v, got)
		}
	}
}

func TestCompressible(t *testing.T) {
	p := New(&config.Compression{MinSize: 10, MaxSize: 100, Level: 1, Types: []string{"application/json", "text/*"}})
	body := make([]byte, 50)
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		enc    string
		cc     string
		size   int
		want   bool
	}{
		{"json", 200, "application/json", "", "", 50, true},
		{"json with charset", 201, "application/json; charset=utf-8", "", "", 50, true},
		{"text wildcard", 404, "TEXT/HTML", "", "", 50, true},
		{"text alone is not text/*", 200, "text/", "", "", 50, false},
		{"image", 200, "image/png", "", "", 50, false},
		{"no type", 200, "", "", "", 50, false},
		{"already encoded", 200, "application/json", "br", "", 50, false},
		{"identity encoding", 200, "application/json", "identity", "", 50, true},
		{"no-transform", 200, "application/json", "", "public, No-Transform", 50, false},
		{"too small", 200, "application/json", "", "", 9, false},
		{"too large", 200, "application/json", "", "", 101, false},
		{"204", 204, "application/json", "", "", 50, false},
		{"206", 206, "application/json", "", "", 50, false},
		{"304", 304, "application/json", "", "", 50, false},
	} {
		var resp fasthttp.Response
		resp.SetStatusCode(tc.status)
		resp.Header.SetNoDefaultContentType(true)
		if tc.ctype != "" {
			resp.Header.SetContentType(tc.ctype)
		}
		if tc.enc != "" {
			resp.Header.Set("Content-Encoding", tc.enc)
		}
		if tc.cc != "" {
			resp.Header.Set("Cache-Control", tc.cc)
		}
		resp.SetBody(body[:0])
		resp.AppendBody(make([]byte, tc.size))
		if got := p.Compressible(&resp); got != tc.want {
			t.Errorf("%s: Compressible = %v", tc.name, got)
		}
	}
}
