package proxy

import (
	"slices"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/upstream"
	"github.com/valyala/fasthttp"
)

const testTarget = "10.0.0.5:3003"

// redirectExchange is a request for shop.example that the gateway forwarded to testTarget, with
// the forwarding headers it sent, and the upstream's response headers.
func redirectExchange(proto string, response ...string) *Exchange {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetHost("shop.example")
	ctx.Request.Header.Set("X-Forwarded-Host", "shop.example")
	ctx.Request.Header.Set("X-Forwarded-Proto", proto)
	for i := 0; i+1 < len(response); i += 2 {
		ctx.Response.Header.Add(response[i], response[i+1])
	}
	return &Exchange{Ctx: ctx, Target: &upstream.Target{Addr: testTarget}, scratch: make([]byte, 0, 64)}
}

func values(h *fasthttp.ResponseHeader, name string) []string {
	var out []string
	for k, v := range h.All() {
		if string(k) == name {
			out = append(out, string(v))
		}
	}
	return out
}

var stripAPI = &config.Redirects{Mode: config.RedirectsRewrite}

func TestRedirectRewrite(t *testing.T) {
	legacy := &config.Redirects{Mode: config.RedirectsRewrite, Map: []config.RewritePair{
		{From: "https://legacy.internal/", To: "/api/legacy/"},
		{From: "/orders/special", To: "/special"},
	}}
	for _, tc := range []struct {
		name       string
		policy     *config.Redirects
		strip, add string
		proto      string
		header, in string
		want       string
	}{
		// At the target's own address: the client's scheme and host, the stripped prefix back.
		{"target address", stripAPI, "/api", "", "http", "Location", "http://10.0.0.5:3003/orders/23", "http://shop.example/api/orders/23"},
		{"target address behind https", stripAPI, "/api", "", "https", "Location", "http://10.0.0.5:3003/orders/23", "https://shop.example/api/orders/23"},
		{"target address, scheme in capitals", stripAPI, "/api", "", "http", "Location", "HTTP://10.0.0.5:3003/orders/23?x=1", "http://shop.example/api/orders/23?x=1"},
		{"target address root", stripAPI, "/api", "", "http", "Location", "http://10.0.0.5:3003", "http://shop.example/api/"},
		{"target address query only", stripAPI, "/api", "", "http", "Location", "http://10.0.0.5:3003?next=1", "http://shop.example/api/?next=1"},
		{"target address, path already the client's", stripAPI, "/api", "", "http", "Location", "http://10.0.0.5:3003/api/orders/23", "http://shop.example/api/orders/23"},
		{"target address over https is not the target", stripAPI, "/api", "", "http", "Location", "https://10.0.0.5:3003/orders/23", "https://10.0.0.5:3003/orders/23"},
		{"another port", stripAPI, "/api", "", "http", "Location", "http://10.0.0.5:3004/orders/23", "http://10.0.0.5:3004/orders/23"},
		// Upstream-relative paths.
		{"relative path", stripAPI, "/api", "", "http", "Location", "/orders/23", "/api/orders/23"},
		{"relative path, query and fragment", stripAPI, "/api", "", "http", "Location", "/products?page=2#top", "/api/products?page=2#top"},
		{"relative root", stripAPI, "/api", "", "http", "Location", "/", "/api/"},
		{"already prefixed (X-Forwarded-Prefix honoured)", stripAPI, "/api", "", "http", "Location", "/api/orders/23", "/api/orders/23"},
		{"prefix only at a segment boundary", stripAPI, "/api", "", "http", "Location", "/apix/1", "/api/apix/1"},
		{"built from the forwarded Host", stripAPI, "/api", "", "http", "Location", "http://SHOP.example/orders/23", "http://SHOP.example/api/orders/23"},
		{"forwarded Host, already prefixed", stripAPI, "/api", "", "http", "Location", "https://shop.example/api/orders/23", "https://shop.example/api/orders/23"},
		// Never touched.
		{"other host", stripAPI, "/api", "", "http", "Location", "https://pay.example.com/checkout", "https://pay.example.com/checkout"},
		{"network-path reference", stripAPI, "/api", "", "http", "Location", "//evil.example/x", "//evil.example/x"},
		{"backslash network path", stripAPI, "/api", "", "http", "Location", `/\evil.example/x`, `/\evil.example/x`},
		{"relative reference", stripAPI, "/api", "", "http", "Location", "23", "23"},
		{"other scheme", stripAPI, "/api", "", "http", "Location", "mailto:a@example.com", "mailto:a@example.com"},
		// add_prefix is reversed, strip_prefix put back; paths outside add_prefix stay.
		{"add_prefix reversed", stripAPI, "/health/users", "/health", "http", "Location", "/health/ready", "/health/users/ready"},
		{"add_prefix root", stripAPI, "/health/users", "/health", "http", "Location", "/health", "/health/users"},
		{"outside add_prefix", stripAPI, "/health/users", "/health", "http", "Location", "/other", "/other"},
		{"add_prefix only", stripAPI, "", "/v2", "http", "Location", "/v2/items/1", "/items/1"},
		{"add_prefix only, to the root", stripAPI, "", "/v2", "http", "Location", "/v2", "/"},
		// Other headers.
		{"Content-Location", stripAPI, "/api", "", "http", "Content-Location", "/orders/23", "/api/orders/23"},
		{"Refresh", stripAPI, "/api", "", "http", "Refresh", "0; url=/orders", "0; url=/api/orders"},
		{"Refresh, quoted absolute", stripAPI, "/api", "", "http", "Refresh", "5;URL='http://10.0.0.5:3003/x'", "5;URL='http://shop.example/api/x'"},
		{"Refresh without URL", stripAPI, "/api", "", "http", "Refresh", "30", "30"},
		{"Refresh to another host", stripAPI, "/api", "", "http", "Refresh", "1; url=https://else.example/", "1; url=https://else.example/"},
		// Explicit pairs first, then the automatic mapping.
		{"explicit pair", legacy, "/api", "", "http", "Location", "https://legacy.internal/a?b", "/api/legacy/a?b"},
		{"explicit pair before the automatic", legacy, "/api", "", "http", "Location", "/orders/special/1", "/special/1"},
		{"no pair matches", legacy, "/api", "", "http", "Location", "/orders/1", "/api/orders/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewRedirectPolicy(tc.policy, []byte(tc.strip), []byte(tc.add))
			x := redirectExchange(tc.proto, tc.header, tc.in)
			p.apply(x)
			if got := values(&x.Ctx.Response.Header, tc.header); !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("%s: %q became %q, want %q", tc.header, tc.in, got, tc.want)
			}
		})
	}
}

func TestRedirectKeepChangesNothing(t *testing.T) {
	if p := NewRedirectPolicy(&config.Redirects{Mode: config.RedirectsKeep}, []byte("/api"), nil); p != nil {
		t.Fatalf("keep without cookie rules compiles to %+v, want nil (nothing to do)", p)
	}
	if p := NewRedirectPolicy(nil, []byte("/api"), nil); p != nil {
		t.Fatal("no section compiles to a policy")
	}
	// keep with cookie rules rewrites cookies but no Location.
	p := NewRedirectPolicy(&config.Redirects{Mode: config.RedirectsKeep, CookiePath: []config.RewritePair{{From: "/", To: "/api/"}}}, []byte("/api"), nil)
	x := redirectExchange("http", "Location", "/orders/1", "Set-Cookie", "a=1; Path=/")
	p.apply(x)
	if got := string(x.Ctx.Response.Header.Peek("Location")); got != "/orders/1" {
		t.Errorf("keep rewrote Location to %q", got)
	}
	if got := values(&x.Ctx.Response.Header, "Set-Cookie"); !slices.Equal(got, []string{"a=1; Path=/api/"}) {
		t.Errorf("Set-Cookie = %q", got)
	}
}

// Header.Set replaces only the first of several lines: every line is rewritten.
func TestRedirectRepeatedHeaderLines(t *testing.T) {
	p := NewRedirectPolicy(stripAPI, []byte("/api"), nil)
	x := redirectExchange("http", "Location", "/a", "Location", "http://10.0.0.5:3003/b", "Content-Location", "/c")
	p.apply(x)
	h := &x.Ctx.Response.Header
	// fasthttp's DelBytes moves the last header into the deleted one's place, so the order of
	// the lines is not kept; each is rewritten.
	got := values(h, "Location")
	slices.Sort(got)
	if !slices.Equal(got, []string{"/api/a", "http://shop.example/api/b"}) {
		t.Errorf("Location lines = %q", got)
	}
	if got := values(h, "Content-Location"); !slices.Equal(got, []string{"/api/c"}) {
		t.Errorf("Content-Location = %q", got)
	}
}

func TestRedirectForwardedHostIsChecked(t *testing.T) {
	p := NewRedirectPolicy(stripAPI, []byte("/api"), nil)
	x := redirectExchange("http", "Location", "http://10.0.0.5:3003/a")
	x.Ctx.Request.Header.Set("X-Forwarded-Host", "evil.example/@x, shop.example")
	p.apply(x)
	if got := string(x.Ctx.Response.Header.Peek("Location")); got != "http://shop.example/api/a" {
		t.Errorf("a forwarded host with a path in it was used: %q", got)
	}
	x = redirectExchange("http", "Location", "http://10.0.0.5:3003/a")
	x.Ctx.Request.Header.Set("X-Forwarded-Host", "front.example:8443, proxy.internal")
	p.apply(x)
	if got := string(x.Ctx.Response.Header.Peek("Location")); got != "http://front.example:8443/api/a" {
		t.Errorf("the first forwarded host was not used: %q", got)
	}
}

func TestCookieRewrite(t *testing.T) {
	p := NewRedirectPolicy(&config.Redirects{
		Mode:         config.RedirectsKeep,
		CookiePath:   []config.RewritePair{{From: "/", To: "/api/"}},
		CookieDomain: []config.RewritePair{{From: ".internal.local", To: "shop.example"}, {From: "drop.local", To: ""}},
	}, []byte("/api"), nil)
	x := redirectExchange("http",
		"Set-Cookie", "sid=1; Path=/; Domain=INTERNAL.local; HttpOnly; SameSite=Lax",
		"Set-Cookie", "pref=dark; path=/account; Max-Age=60",
		"Set-Cookie", "t=2; Domain=.drop.local; Secure",
		"Set-Cookie", "other=3; Domain=else.example",
	)
	p.apply(x)
	want := []string{
		"sid=1; Path=/api/; Domain=shop.example; HttpOnly; SameSite=Lax",
		"pref=dark; path=/api/account; Max-Age=60",
		"t=2; Secure",
		"other=3; Domain=else.example",
	}
	if got := values(&x.Ctx.Response.Header, "Set-Cookie"); !slices.Equal(got, want) {
		t.Fatalf("Set-Cookie =\n%q\nwant\n%q", got, want)
	}
}

// Cookies are left exactly as sent (spacing included) when no rule applies.
func TestCookieRewriteLeavesOthersAlone(t *testing.T) {
	p := NewRedirectPolicy(&config.Redirects{Mode: config.RedirectsKeep, CookiePath: []config.RewritePair{{From: "/app", To: "/"}}}, nil, nil)
	in := "sid=1;Path=/;HttpOnly"
	x := redirectExchange("http", "Set-Cookie", in)
	p.apply(x)
	if got := values(&x.Ctx.Response.Header, "Set-Cookie"); !slices.Equal(got, []string{in}) {
		t.Fatalf("Set-Cookie = %q, want it untouched", got)
	}
}

func FuzzRedirectMapURL(f *testing.F) {
	for _, s := range []string{"/a", "http://10.0.0.5:3003", "http://shop.example/x?y#z", "//x", "https://", "0; url='", "/health/users"} {
		f.Add(s)
	}
	policies := []*RedirectPolicy{
		NewRedirectPolicy(stripAPI, []byte("/api"), nil),
		NewRedirectPolicy(stripAPI, []byte("/health/users"), []byte("/health")),
		NewRedirectPolicy(&config.Redirects{Mode: config.RedirectsRewrite, Map: []config.RewritePair{{From: "/", To: "/x/"}}}, nil, nil),
	}
	f.Fuzz(func(t *testing.T, u string) {
		for _, p := range policies {
			x := redirectExchange("http")
			out, changed := p.mapURL(x, nil, []byte(u))
			if !changed {
				continue
			}
			if len(u) > 0 && u[0] == '/' && (len(out) == 0 || out[0] != '/') {
				t.Fatalf("path %q became %q, not a path", u, out)
			}
			if _, _, _, abs := splitAbsolute([]byte(u)); !abs && len(out) > 1 && out[0] == '/' && (out[1] == '/' || out[1] == '\\') && !(len(u) > 1 && (u[1] == '/' || u[1] == '\\')) {
				t.Fatalf("path %q became network-path reference %q", u, out)
			}
			_, _ = p.mapRefresh(x, nil, []byte(u))
		}
	})
}
