package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/money"
)

func TestWriteCacheable(t *testing.T) {
	serve := func(ifNoneMatch string) *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		if ifNoneMatch != "" {
			ctx.Request.Header.Set("If-None-Match", ifNoneMatch)
		}
		ctx.Response.Header.Set("X-Total-Count", "3")
		if err := WriteCacheable(&ctx, []int{1, 2, 3}, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return &ctx
	}
	first := serve("")
	etag := string(first.Response.Header.Peek("ETag"))
	if first.Response.StatusCode() != 200 || !strings.HasPrefix(etag, `"`) || len(etag) < 10 ||
		string(first.Response.Header.Peek("Cache-Control")) != "public, max-age=30" ||
		string(first.Response.Body()) != "[1,2,3]\n" {
		t.Fatalf("first response: %d etag %q cc %q body %q", first.Response.StatusCode(), etag,
			first.Response.Header.Peek("Cache-Control"), first.Response.Body())
	}
	for _, tc := range []struct {
		header string
		want   int
	}{
		{etag, 304},
		{"W/" + etag, 304},
		{`"other", ` + etag, 304},
		{"*", 304},
		{`"other"`, 200},
		{etag[:len(etag)-2] + `x"`, 200},
	} {
		ctx := serve(tc.header)
		if got := ctx.Response.StatusCode(); got != tc.want {
			t.Errorf("If-None-Match %s: status %d; want %d", tc.header, got, tc.want)
		}
		if tc.want == 304 && (len(ctx.Response.Body()) != 0 || string(ctx.Response.Header.Peek("ETag")) != etag ||
			string(ctx.Response.Header.Peek("X-Total-Count")) != "3") {
			t.Errorf("304 carries body %q, etag %q, total %q", ctx.Response.Body(), ctx.Response.Header.Peek("ETag"),
				ctx.Response.Header.Peek("X-Total-Count"))
		}
	}
}

func TestWriteErrorOverridesCaching(t *testing.T) {
	var ctx fasthttp.RequestCtx
	EnsureRequestID(&ctx)
	ctx.Response.Header.Set("ETag", `"x"`)
	ctx.Response.Header.Set("Cache-Control", "public, max-age=60")
	if got := WriteError(&ctx, fmt.Errorf("wrapped: %w", NotFound("product not found"))); got != 404 {
		t.Fatalf("status = %d", got)
	}
	if len(ctx.Response.Header.Peek("ETag")) != 0 || string(ctx.Response.Header.Peek("Cache-Control")) != "no-store" {
		t.Fatal("an error response kept cache headers")
	}
	var body map[string]string
	if err := json.Unmarshal(ctx.Response.Body(), &body); err != nil || body["error"] != "product not found" || body["request_id"] == "" {
		t.Fatalf("body = %s", ctx.Response.Body())
	}
}

func TestDecodeJSONNamesFields(t *testing.T) {
	type nested struct {
		Qty int `json:"qty"`
	}
	type input struct {
		Price money.Cents `json:"price"`
		Tags  []string    `json:"tags"`
		Item  nested      `json:"item"`
		OK    bool        `json:"ok"`
	}
	for _, tc := range []struct{ body, field, message string }{
		{`{"price": 1.234}`, "price", "price: must be a decimal amount with at most 2 decimal places"},
		{`{"price": "12"}`, "price", ""},
		{`{"tags": "x"}`, "tags", "tags: must be an array"},
		{`{"item": {"qty": 1.5}}`, "item.qty", "item.qty: must be an integer"},
		{`{"ok": 1}`, "ok", "ok: must be true or false"},
		{`"just a string"`, "body", ""},
		{`{`, "body", "body: malformed JSON"},
		{`   `, "body", ""},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetBodyString(tc.body)
		var in input
		err := DecodeJSON(&ctx, &in)
		apiErr, ok := err.(*Error)
		if !ok || apiErr.Status != 400 || apiErr.Field != tc.field || (tc.message != "" && apiErr.Message != tc.message) {
			t.Errorf("%s: err = %#v; want 400 on %s %q", tc.body, err, tc.field, tc.message)
		}
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.SetBodyString(`{"price": 12.5, "unknown": true}`)
	var in input
	if err := DecodeJSON(&ctx, &in); err != nil || in.Price != 1250 {
		t.Fatalf("valid body: %v, price %d", err, in.Price)
	}
}

func TestQueryInt(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  int
		field string
	}{
		{"", 20, ""}, {"limit=5", 5, ""}, {"limit=100", 100, ""},
		{"limit=0", 0, "limit"}, {"limit=101", 0, "limit"}, {"limit=abc", 0, "limit"}, {"limit=", 0, "limit"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/x?" + tc.query)
		got, err := QueryInt(&ctx, "limit", 20, 1, 100)
		if tc.field == "" && (err != nil || got != tc.want) {
			t.Errorf("%q: %d, %v; want %d", tc.query, got, err, tc.want)
		}
		if tc.field != "" {
			if e, ok := err.(*Error); !ok || e.Field != tc.field || e.Status != 400 {
				t.Errorf("%q: err = %v; want 400 naming %s", tc.query, err, tc.field)
			}
		}
	}
}

func ExampleDecodeJSON() {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetBodyString(`{"quantity": "two"}`)
	var req struct {
		Quantity int `json:"quantity"`
	}
	err := DecodeJSON(&ctx, &req)
	fmt.Println(err.(*Error).Status, err.(*Error).Message)
	// Output: 400 quantity: must be an integer
}
