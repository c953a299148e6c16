package compress

import (
	"fmt"
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

// BenchmarkCompress measures gzipping a JSON response body in place, by size and level.
func BenchmarkCompress(b *testing.B) {
	for _, size := range []int{1 << 10, 4 << 10, 64 << 10} {
		// A catalog page: repetitive keys, varying values, as real JSON APIs are.
		body := []byte(`{"items":[`)
		for i := 0; len(body) < size-100; i++ {
			body = fmt.Appendf(body, `{"id":%d,"name":"Product %x","price":%d.%02d,"stock":%d,"tags":["t%d"]},`,
				i*7919%100000, i*2654435761%4294967296, i*37%2000, i%100, i*13%500, i%17)
		}
		body = append(body[:len(body)-1], "]}"...)
		for _, level := range []int{1, 5, 9} {
			p := New(&config.Compression{MinSize: 0, MaxSize: 1 << 20, Level: level, Types: []string{"application/json"}})
			b.Run(fmt.Sprintf("%dKiB/level-%d", size>>10, level), func(b *testing.B) {
				var resp fasthttp.Response
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					resp.Reset()
					resp.Header.SetContentType("application/json")
					resp.SetBody(body)
					p.compress(&resp)
				}
				b.ReportMetric(float64(len(body))/float64(len(resp.Body())), "ratio")
			})
		}
	}
}
