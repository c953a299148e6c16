package discovery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStaticEmitsOnceAndStopsOnCancel(t *testing.T) {
	src, err := NewStatic("products", []Endpoint{
		{Address: "127.0.0.1", Port: 9002, Meta: map[string]string{"weight": "3"}},
		{Address: "127.0.0.1", Port: 9001},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Snapshot)
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, out) }()

	s := <-out
	if s.Err != nil || s.Service != "products" || !s.Authoritative() {
		t.Fatalf("snapshot = %+v; want authoritative products", s)
	}
	if got := ids(s.Endpoints); strings.Join(got, ",") != "127.0.0.1:9001,127.0.0.1:9002" {
		t.Fatalf("ids = %v; want sorted address:port ids", got)
	}
	if s.Endpoints[0].Weight != 1 || s.Endpoints[1].Weight != 3 {
		t.Fatalf("weights = %d,%d; want 1,3 (default and from meta)", s.Endpoints[0].Weight, s.Endpoints[1].Weight)
	}
	// The consumer owns what it received: changing it must not change the next Watch.
	s.Endpoints[0].Port = 1

	select {
	case s := <-out:
		t.Fatalf("second snapshot %+v; a static source sends once", s)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v; want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Watch did not return after cancel")
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = src.Watch(ctx2, out) }()
	if s := <-out; s.Endpoints[0].Port != 9001 {
		t.Fatalf("second Watch sees port %d; a consumer's change leaked into the source", s.Endpoints[0].Port)
	}
}

func TestStaticWatchReturnsWhenNobodyReads(t *testing.T) {
	src, err := NewStatic("users", []Endpoint{{Address: "127.0.0.1", Port: 9001}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, make(chan Snapshot)) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Watch blocked on a send nobody receives after cancel")
	}
}

func TestNewStaticRejectsBadEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service string
		eps     []Endpoint
		want    string
	}{
		{"no service", "", nil, "service name is empty"},
		{"no address", "s", []Endpoint{{Port: 1}}, "has no address"},
		{"port zero", "s", []Endpoint{{Address: "a", Port: 0}}, "port 0 out of range"},
		{"port too big", "s", []Endpoint{{Address: "a", Port: 70000}}, "port 70000 out of range"},
		{"duplicate", "s", []Endpoint{{Address: "a", Port: 1}, {Address: "a", Port: 1}}, `duplicate endpoint id "a:1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewStatic(tc.service, tc.eps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tc.want)
			}
		})
	}
	if src, err := NewStatic("s", nil); err != nil || src == nil {
		t.Fatalf("an empty static list is allowed (an upstream with no targets yet): %v", err)
	}
}

func TestEndpointHostPortBracketsIPv6(t *testing.T) {
	if got := (Endpoint{Address: "::1", Port: 80}).HostPort(); got != "[::1]:80" {
		t.Fatalf("HostPort = %q", got)
	}
}
