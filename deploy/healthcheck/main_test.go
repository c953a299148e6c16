package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
		err  bool
	}{
		{name: "argument wins", args: []string{"http://x:1/h"}, env: map[string]string{"HEALTHCHECK_URL": "http://y:2/"}, want: "http://x:1/h"},
		{name: "HEALTHCHECK_URL", env: map[string]string{"HEALTHCHECK_URL": "http://y:2/", "ARCHWAY_SERVICE": "users"}, want: "http://y:2/"},
		{name: "service default", env: map[string]string{"ARCHWAY_SERVICE": "products"}, want: "http://127.0.0.1:3002/health"},
		{name: "service ADDR", env: map[string]string{"ARCHWAY_SERVICE": "orders", "ADDR": ":3013"}, want: "http://127.0.0.1:3013/health"},
		{name: "gateway default", env: map[string]string{"ARCHWAY_SERVICE": "gateway", "ADDR": ":1"}, want: "http://127.0.0.1:80/health"},
		{name: "gateway listen", env: map[string]string{"ARCHWAY_SERVICE": "gateway", "ARCHWAY_LISTEN": "0.0.0.0:80"}, want: "http://127.0.0.1:80/health"},
		{name: "unknown service", env: map[string]string{"ARCHWAY_SERVICE": "cart"}, err: true},
		{name: "bad ADDR", env: map[string]string{"ARCHWAY_SERVICE": "users", "ADDR": "3001"}, err: true},
		{name: "two arguments", args: []string{"a", "b"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := target(tc.args, func(k string) string { return tc.env[k] })
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("target = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if err := check(srv.URL, time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := check(srv.URL, time.Second); err == nil {
		t.Fatal("503 passed the check")
	}
	srv.Close()
	if err := check(srv.URL, time.Second); err == nil {
		t.Fatal("a refused connection passed the check")
	}
}
