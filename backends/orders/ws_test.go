package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

func wsURL(inst *ordersInstance, query string) string {
	return "ws" + strings.TrimPrefix(inst.url, "http") + "/ws/orders" + query
}

// wsClient is a test's WebSocket: messages are read in the background, so control frames (pings,
// close) are handled as a browser would.
type wsClient struct {
	conn     *websocket.Conn
	messages chan map[string]any
	closed   chan error // the read error that ended the connection
	pings    atomic.Int32
	deaf     atomic.Bool // stop answering pings
}

func dialWS(t *testing.T, url string, header http.Header) *wsClient {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{conn: conn, messages: make(chan map[string]any, 100), closed: make(chan error, 1)}
	conn.SetPingHandler(func(data string) error {
		c.pings.Add(1)
		if c.deaf.Load() {
			return nil
		}
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			_, raw, err := conn.ReadMessage()
			if err != nil {
				c.closed <- err
				return
			}
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil {
				m = map[string]any{"raw": string(raw)}
			}
			c.messages <- m
		}
	}()
	if m := c.next(t); m["type"] != "subscribed" {
		t.Fatalf("first message %v; want subscribed", m)
	}
	return c
}

func (c *wsClient) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m := <-c.messages:
		return m
	case err := <-c.closed:
		t.Fatalf("connection closed while waiting for a message: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
	}
	return nil
}

// expectStatus waits for the order's next status message.
func (c *wsClient) expectStatus(t *testing.T, orderID int, status string) map[string]any {
	t.Helper()
	m := c.next(t)
	if m["type"] != "order_status" || m["order_id"] != float64(orderID) || m["status"] != status ||
		m["updated_at"] == nil || m["event_id"] == nil {
		t.Fatalf("message %v; want order %d %s", m, orderID, status)
	}
	return m
}

func (c *wsClient) expectClose(t *testing.T, code int) {
	t.Helper()
	select {
	case m := <-c.messages:
		t.Fatalf("message %v; want a close", m)
	case err := <-c.closed:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("closed with %v; want close code %d", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no close %d within 10 s", code)
	}
}

func TestWebSocketAuthentication(t *testing.T) {
	s := startStack(t, stackOptions{})
	inst := s.orders[0]
	expired, _ := auth.NewHS256Issuer([]byte(testSecret), auth.IssuerConfig{Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }})
	old, _, _ := expired.Issue(2, "ana@example.com", auth.RoleCustomer)
	foreign, _ := auth.NewHS256Issuer([]byte(strings.Repeat("x", 32)), auth.IssuerConfig{})
	forged, _, _ := foreign.Issue(2, "ana@example.com", auth.RoleCustomer)

	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
	}{
		{"no token", "", nil},
		{"garbage token", "?token=garbage", nil},
		{"expired token", "?token=" + old, nil},
		{"token signed with another key", "?token=" + forged, nil},
		{"token as a subprotocol without the marker", "", http.Header{"Sec-WebSocket-Protocol": {s.customer}}},
		{"identity header contradicting the token", "?token=" + s.customer, http.Header{"X-User-Id": {"3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := websocket.DefaultDialer.Dial(wsURL(inst, tc.query), tc.header)
			if err == nil {
				conn.Close()
				t.Fatal("connected")
			}
			if resp == nil || resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatalf("dial: %v, %+v; want a 401", err, resp)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), `"request_id"`) {
				t.Fatalf("401 body %s", body)
			}
		})
	}
	t.Run("token as a query parameter", func(t *testing.T) {
		dialWS(t, wsURL(inst, "?token="+s.customer), nil)
	})
	t.Run("token as a subprotocol", func(t *testing.T) {
		c := dialWS(t, wsURL(inst, ""), http.Header{"Sec-WebSocket-Protocol": {"archway.bearer, " + s.customer}})
		if c.conn.Subprotocol() != "archway.bearer" {
			t.Fatalf("subprotocol %q; want archway.bearer (never the token)", c.conn.Subprotocol())
		}
	})
	t.Run("token in an Authorization header", func(t *testing.T) {
		dialWS(t, wsURL(inst, ""), http.Header{"Authorization": {"Bearer " + s.customer}})
	})
	t.Run("a plain GET is a 400", func(t *testing.T) {
		if r := call(t, "GET", inst.url+"/ws/orders", s.customer, ""); r.status != 400 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

// A status change made through one orders instance reaches a WebSocket connected to another
// instance sharing the database; other users hear nothing of it.
// Several instances sharing the database and no broker: each instance's feed tails the outbox,
// so a WebSocket on either instance gets every change, whichever instance made it.
func TestWebSocketPushesChangesAcrossInstances(t *testing.T) {
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		s := startStack(t, stackOptions{ordersDB: newURL(t), instances: 2})
		a, b := s.orders[0], s.orders[1]
		mine := dialWS(t, wsURL(b, "?token="+s.customer), nil)
		theirs := dialWS(t, wsURL(b, "?token="+s.other), nil)
		sameInstance := dialWS(t, wsURL(a, "?token="+s.customer), nil)

		id := s.placeOrder(t, twoLaptopsAndHeadphones) // through a
		mine.expectStatus(t, id, "pending")
		sameInstance.expectStatus(t, id, "pending")
		if r := call(t, "POST", fmt.Sprintf("%s/orders/%d/pay", a.url, id), s.customer, cardBody("4000000000000002")); r.status != 402 {
			t.Fatalf("declined pay: %d %s", r.status, r.raw)
		}
		if r := call(t, "POST", fmt.Sprintf("%s/orders/%d/pay", a.url, id), s.customer, cardBody("4242424242424242")); r.status != 200 {
			t.Fatalf("pay: %d %s", r.status, r.raw)
		}
		// A decline changes no status, so the next message is paid.
		paid := mine.expectStatus(t, id, "paid")
		sameInstance.expectStatus(t, id, "paid")
		order := call(t, "GET", fmt.Sprintf("%s/orders/%d", b.url, id), s.customer, "").object(t)
		if paid["updated_at"] != order["updated_at"] {
			t.Fatalf("message updated_at %v; order updated_at %v", paid["updated_at"], order["updated_at"])
		}
		if r := call(t, "PUT", fmt.Sprintf("%s/orders/%d/status", a.url, id), s.admin, `{"status":"shipped"}`); r.status != 200 {
			t.Fatalf("ship: %d %s", r.status, r.raw)
		}
		mine.expectStatus(t, id, "shipped")
		// The other user's socket got none of it: its first message is its own order.
		if r := s.order(t, 0, s.other, `{"items":[{"product_id":8,"quantity":1}],"shipping_address":"y"}`); r.status != 201 {
			t.Fatal(r.raw)
		} else {
			theirs.expectStatus(t, int(r.object(t)["id"].(float64)), "pending")
		}
		// Without a broker and nothing to push to, the relay marks each event sent once it is
		// in the outbox: the feeds tail it by id, so nothing waits.
		waitFor(t, "the outbox to drain", func() bool { _, unsent := outboxIDs(t, a.store); return unsent == 0 })
	})
}

func TestWebSocketKeepaliveExpiryAndShutdown(t *testing.T) {
	s := startStack(t, stackOptions{pingInterval: time.Second})
	inst := s.orders[0]
	c := dialWS(t, wsURL(inst, "?token="+s.customer), nil)

	short, _ := auth.NewHS256Issuer([]byte(testSecret), auth.IssuerConfig{TTL: 2 * time.Second})
	token, _, _ := short.Issue(2, "ana@example.com", auth.RoleCustomer)
	expiring := dialWS(t, wsURL(inst, "?token="+token), nil)
	expiring.expectClose(t, websocket.ClosePolicyViolation)

	if c.pings.Load() == 0 {
		t.Fatal("no ping within the expiring token's lifetime (ping interval 1 s)")
	}
	// A client that stops answering pings is dropped after two intervals.
	silent := dialWS(t, wsURL(inst, "?token="+s.customer), nil)
	silent.deaf.Store(true)
	select {
	case <-silent.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("a client that never answers pings is still connected after 5 s")
	}

	// Shutting the instance down closes the socket with 1001 "going away".
	done := make(chan struct{})
	go func() { inst.stop(); close(done) }()
	c.expectClose(t, websocket.CloseGoingAway)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}
