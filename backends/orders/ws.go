package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/server"
)

// WebSocket defaults.
const (
	DefaultPingInterval = 30 * time.Second
	wsWriteTimeout      = 10 * time.Second
	wsReadLimit         = 4096
	// wsProtocol is the subprotocol a browser offers next to its token, since it cannot set an
	// Authorization header: new WebSocket(url, ["archway.bearer", token]). The server selects
	// it and never echoes the token.
	wsProtocol = "archway.bearer"
)

// Messages sent on /ws/orders.
const (
	msgSubscribed  = "subscribed"
	msgOrderStatus = "order_status"
)

// subscribedMessage is the first message: from here on every change is delivered.
type subscribedMessage struct {
	Type   string `json:"type"`
	UserID int64  `json:"user_id"`
}

// statusMessage is one status change of one of the user's orders (or a new order, pending).
type statusMessage struct {
	Type      string    `json:"type"`
	EventID   int64     `json:"event_id"`
	OrderID   int64     `json:"order_id"`
	Status    string    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
}

type wsSettings struct {
	PingInterval time.Duration // server pings; a client silent for two intervals is dropped
	connections  prometheus.Gauge
}

type wsErrorKey struct{}

func (s *service) initWebSocket(srv *server.Server) {
	if s.ws.PingInterval <= 0 {
		s.ws.PingInterval = DefaultPingInterval
	}
	s.ws.connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "orders_websocket_connections",
		Help: "Open /ws/orders connections.", ConstLabels: prometheus.Labels{"service": "orders"}})
	srv.Registry().MustRegister(s.ws.connections)
	s.upgrader = websocket.FastHTTPUpgrader{
		HandshakeTimeout: wsWriteTimeout,
		Subprotocols:     []string{wsProtocol},
		// Any origin: the connection is authorized by a token the page must hold, not by
		// cookies a browser would attach to a cross-site request.
		CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
		// A failed handshake is answered as every other error is, by the server.
		Error: func(ctx *fasthttp.RequestCtx, status int, reason error) {
			ctx.SetUserValue(wsErrorKey{}, &api.Error{Status: status, Message: reason.Error()})
		},
	}
}

// wsToken finds a token given the ways a WebSocket client can: the query parameter token, or
// the subprotocols ["archway.bearer", token]. An Authorization header needs no help.
func wsToken(ctx *fasthttp.RequestCtx) string {
	if t := ctx.QueryArgs().Peek("token"); len(t) > 0 {
		return string(t)
	}
	marked, token := false, ""
	for _, p := range strings.Split(string(ctx.Request.Header.Peek("Sec-WebSocket-Protocol")), ",") {
		switch p = strings.TrimSpace(p); p {
		case wsProtocol:
			marked = true
		case "":
		default:
			token = p
		}
	}
	if marked {
		return token
	}
	return ""
}

// websocket upgrades GET /ws/orders for a verified user and pushes the status changes of the
// user's orders until the client leaves, the token expires or the service stops.
func (s *service) websocket(ctx *fasthttp.RequestCtx) error {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) == 0 {
		if token := wsToken(ctx); token != "" {
			ctx.Request.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+token)
		}
	}
	claims, err := s.verifier.Authenticate(ctx)
	if err != nil {
		return err
	}
	userID, err := claims.UserID()
	if err != nil {
		return err
	}
	if !websocket.FastHTTPIsWebSocketUpgrade(ctx) {
		return api.Errorf(http.StatusBadRequest, "this endpoint is a WebSocket: send an Upgrade: websocket request")
	}
	expires := claims.ExpiresAt.Time
	err = s.upgrader.Upgrade(ctx, func(conn *websocket.Conn) { s.serveWebSocket(conn, userID, expires) })
	if err != nil {
		if e, ok := ctx.UserValue(wsErrorKey{}).(*api.Error); ok {
			e.Err = err
			return e
		}
		return err
	}
	return nil
}

// serveWebSocket runs on the hijacked connection, in a goroutine fasthttp owns; it returns when
// the connection is done. A second goroutine reads (the client sends nothing we use, but pongs
// and close frames must be read).
func (s *service) serveWebSocket(conn *websocket.Conn, userID int64, expires time.Time) {
	defer conn.Close()
	s.ws.connections.Inc()
	defer s.ws.connections.Dec()
	sub := s.feed.Subscribe(userID)
	defer s.feed.Unsubscribe(sub)

	pongWait := 2 * s.ws.PingInterval
	conn.SetReadLimit(wsReadLimit)
	_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(pongWait)) })
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	write := func(v any) bool {
		_ = conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		return conn.WriteJSON(v) == nil
	}
	closeWith := func(code int, text string) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		select { // let the client answer the close before the connection goes
		case <-readDone:
		case <-time.After(time.Second):
		}
	}

	if !write(subscribedMessage{Type: msgSubscribed, UserID: userID}) {
		return
	}
	ping := time.NewTicker(s.ws.PingInterval)
	defer ping.Stop()
	expiry := time.NewTimer(time.Until(expires))
	defer expiry.Stop()
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				if s.feed.Reason(sub) == endSlow {
					closeWith(websocket.CloseTryAgainLater, "too far behind; reconnect and reload your orders")
				} else {
					closeWith(websocket.CloseGoingAway, "the service is shutting down; reconnect")
				}
				return
			}
			if !write(statusMessage{Type: msgOrderStatus, EventID: e.ID, OrderID: e.OrderID, Status: e.Status, UpdatedAt: e.At}) {
				return
			}
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout)) != nil {
				return
			}
		case <-expiry.C:
			closeWith(websocket.ClosePolicyViolation, "token expired; reconnect with a new token")
			return
		case <-readDone:
			return
		}
	}
}
