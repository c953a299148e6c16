package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestParsePeer(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:3002":   "http://127.0.0.1:3002",
		"http://products:3002/":   "http://products:3002",
		"https://pay.example.com": "https://pay.example.com",
		"127.0.0.1:3002":          "",
		"ftp://x":                 "",
		"http://":                 "",
		"http://x:1/?a=b":         "",
	} {
		got, err := ParsePeer("products", raw)
		if string(got) != want || (want == "") != (err != nil) {
			t.Errorf("ParsePeer(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestPeerClientRetriesOnlyIdempotentCallsOnTransientFailures(t *testing.T) {
	var hits atomic.Int32
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Request-ID") != "rid" || r.Header.Get("Idempotency-Key") != "k" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"error":"boom"}`))
	}))
	defer srv.Close()
	c := newPeerClient("svc", StaticPeer(srv.URL), ClientOptions{Timeout: time.Second, Retries: 2, Backoff: time.Millisecond})
	ctx := context.Background()
	for _, tc := range []struct {
		status     int
		idempotent bool
		hits       int32
		err        bool
	}{
		{503, true, 3, true},
		{502, true, 3, true},
		{504, true, 3, true},
		{503, false, 1, true},
		{500, true, 1, false}, // an answer, not a transient failure
		{409, true, 1, false},
		{201, true, 1, false},
	} {
		hits.Store(0)
		status.Store(int32(tc.status))
		r, err := c.do(ctx, peerCall{method: "POST", path: "/x", body: map[string]int{"a": 1}, token: "tok", requestID: "rid",
			header: map[string]string{"Idempotency-Key": "k"}, idempotent: tc.idempotent})
		if hits.Load() != tc.hits || (err != nil) != tc.err || err != nil && !errors.Is(err, errUnavailable) || err == nil && r.status != tc.status {
			t.Errorf("status %d idempotent %v: %d attempts, reply %d, err %v; want %d attempts", tc.status, tc.idempotent, hits.Load(), r.status, err, tc.hits)
		}
		if err == nil && r.errorMessage() != "boom" && tc.status >= 400 {
			t.Errorf("errorMessage %q", r.errorMessage())
		}
	}
}

func TestPeerClientTimesOutEachAttempt(t *testing.T) {
	block := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c := newPeerClient("svc", StaticPeer(srv.URL), ClientOptions{Timeout: 100 * time.Millisecond, Retries: 1, Backoff: time.Millisecond})
	start := time.Now()
	_, err := c.do(context.Background(), peerCall{method: "GET", path: "/", idempotent: true})
	if !errors.Is(err, errUnavailable) || hits.Load() != 2 || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v after %d attempts in %s; want unavailable after 2 attempts", err, hits.Load(), time.Since(start))
	}
	// Nothing listening: a connection error, retried, then unavailable.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c = newPeerClient("svc", StaticPeer("http://"+addr), ClientOptions{Timeout: time.Second, Retries: 1, Backoff: time.Millisecond})
	if _, err := c.do(context.Background(), peerCall{method: "GET", path: "/", idempotent: true}); !errors.Is(err, errUnavailable) {
		t.Fatalf("nothing listening: %v", err)
	}
}

func TestPeerClientWorstCase(t *testing.T) {
	c := newPeerClient("svc", StaticPeer("http://x"), ClientOptions{Timeout: 5 * time.Second, Retries: 2, Backoff: 100 * time.Millisecond})
	if got, want := c.worstCase(), 15*time.Second+300*time.Millisecond; got != want {
		t.Fatalf("worstCase = %s; want %s", got, want)
	}
}

type failingPeer struct{}

func (failingPeer) BaseURL() (string, error) { return "", errors.New("no instances") }

func TestPeerResolutionFailureIsUnavailable(t *testing.T) {
	c := newPeerClient("svc", failingPeer{}, ClientOptions{Retries: 1, Backoff: time.Millisecond})
	if _, err := c.do(context.Background(), peerCall{method: "GET", path: "/", idempotent: true}); !errors.Is(err, errUnavailable) {
		t.Fatalf("err %v", err)
	}
}
