package server

import (
	"net"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/park"
	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// newParker starts the one watcher of parked connections when server.idle_park_after is set
// (nil otherwise). It runs until Shutdown. Failing to make the epoll set (out of descriptors)
// leaves parking off, logged: connections are then served as without the setting.
func (g *Gateway) newParker(s config.Server) *park.Parker {
	after := s.IdleParkAfter.D()
	if after <= 0 {
		return nil
	}
	p, err := park.New(g.ctx, after, g.logger)
	if err != nil {
		g.logger.Error("server.idle_park_after: parking stays off", "error", err.Error())
		return nil
	}
	return p
}

// parkOn makes rt's connections park after being idle for s.IdleParkAfter at a request
// boundary. fasthttp's goroutine of a parked connection has nothing left to do: it exits
// after the same delay instead of fasthttp's default 10 s, so that its stack is freed too.
func parkOn(rt *listenerRuntime, p *park.Parker, s config.Server) {
	rt.park = p.Listener(s.IdleParkAfter.D())
	rt.park.Crowding(rt.server.GetOpenConnectionsCount, park.DefaultCrowd)
	rt.parker = p
	rt.server.ConnState = parkConnState
	rt.server.MaxIdleWorkerDuration = s.IdleParkAfter.D()
}

// parkConnState tells a parking connection what fasthttp does with it. Called by fasthttp at
// every request's start and end, so it only follows two pointers.
func parkConnState(c net.Conn, st fasthttp.ConnState) {
	if pc, ok := c.(*protocol.Conn); ok {
		if k, ok := pc.Conn.(*park.Conn); ok {
			k.ConnState(st)
		}
	}
}

// closeParker stops the watcher once the listeners are shut down (they closed their parked
// connections already).
func (g *Gateway) closeParker() {
	for _, rt := range g.listeners {
		if rt.parker != nil {
			_ = rt.parker.Close()
			return
		}
	}
}

// parkedConnections is how many client connections are parked now.
func (g *Gateway) parkedConnections() int32 {
	var n int64
	for _, rt := range g.listeners {
		if rt.park != nil {
			n += rt.park.Parked()
		}
	}
	return int32(n)
}

// ParkStats are the parking counters of every listener, added up (tests, the benchmark).
func (g *Gateway) ParkStats() park.Stats {
	var s park.Stats
	for _, rt := range g.listeners {
		if rt.park == nil {
			continue
		}
		l := rt.park.Stats()
		s.Parked += l.Parked
		s.Parks += l.Parks
		s.Wakes += l.Wakes
		for i := range s.Closed {
			s.Closed[i] += l.Closed[i]
		}
	}
	return s
}

var (
	parkedDesc = prometheus.NewDesc("archway_parked_connections",
		"Idle keep-alive client connections parked now (server.idle_park_after): watched by the gateway's epoll set, without a goroutine or read buffer.", []string{"listener"}, nil)
	parksDesc = prometheus.NewDesc("archway_connection_parks_total",
		"Idle keep-alive client connections parked.", []string{"listener"}, nil)
	wakesDesc = prometheus.NewDesc("archway_connection_wakes_total",
		"Parked connections handed back to the HTTP server because their next request arrived.", []string{"listener"}, nil)
	parkedClosedDesc = prometheus.NewDesc("archway_parked_connections_closed_total",
		"Parked connections closed while parked, by reason (idle_timeout, client_closed, shutdown).", []string{"listener", "reason"}, nil)
	parkReleasesDesc = prometheus.NewDesc("archway_parking_memory_releases_total",
		"Times the memory parked connections gave back was returned to the operating system (after a wave of parks settled).", nil, nil)
)

func describeParking(ch chan<- *prometheus.Desc) {
	ch <- parkedDesc
	ch <- parksDesc
	ch <- wakesDesc
	ch <- parkedClosedDesc
	ch <- parkReleasesDesc
}

func collectParking(ch chan<- prometheus.Metric, g *Gateway) {
	var parker *park.Parker
	for _, rt := range g.listeners {
		if rt.park == nil {
			continue
		}
		parker = rt.parker
		s := rt.park.Stats()
		ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(s.Parked), rt.name)
		ch <- prometheus.MustNewConstMetric(parksDesc, prometheus.CounterValue, float64(s.Parks), rt.name)
		ch <- prometheus.MustNewConstMetric(wakesDesc, prometheus.CounterValue, float64(s.Wakes), rt.name)
		for r, name := range park.CloseReasonNames {
			ch <- prometheus.MustNewConstMetric(parkedClosedDesc, prometheus.CounterValue, float64(s.Closed[r]), rt.name, name)
		}
	}
	if parker != nil {
		ch <- prometheus.MustNewConstMetric(parkReleasesDesc, prometheus.CounterValue, float64(parker.Releases()))
	}
}
