package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRecordCollectAndForgetRemovedRoutes(t *testing.T) {
	r := NewRegistry()
	a, b := r.Route("a"), r.Route("b")
	if r.Route("a") != a {
		t.Fatal("Route made new stats for a known route")
	}
	a.Record(protocol.WireHTTP1, 0, 200, 3*time.Millisecond, 2*time.Millisecond, 10, 20)
	a.Record(protocol.WireHTTP2, 0, 200, time.Millisecond, 0, 0, 5)
	a.Record(protocol.WireHTTP1, -1, 503, time.Millisecond, 0, 0, 0)
	b.Record(protocol.WireHTTP1, 2, 201, time.Millisecond, time.Millisecond, 1, 1)
	r.SetLive([]*RouteStats{b, a})
	if a.Requests(0, 200) != 2 || a.Requests(len(Methods)-1, 503) != 1 || a.RequestsOver(protocol.WireHTTP2, 0, 200) != 1 {
		t.Fatal("counters wrong")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r)
	want := `
# HELP archway_requests_total Requests answered, by route, method, status code and protocol (HTTP/1.1, HTTP/2).
# TYPE archway_requests_total counter
archway_requests_total{code="200",method="GET",protocol="HTTP/1.1",route="a"} 1
archway_requests_total{code="200",method="GET",protocol="HTTP/2",route="a"} 1
archway_requests_total{code="503",method="OTHER",protocol="HTTP/1.1",route="a"} 1
archway_requests_total{code="201",method="POST",protocol="HTTP/1.1",route="b"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "archway_requests_total"); err != nil {
		t.Fatal(err)
	}
	r.SetLive([]*RouteStats{b}) // a reload removed route a
	if n := testutil.CollectAndCount(r, "archway_requests_total"); n != 1 {
		t.Fatalf("%d series after a was removed, want 1", n)
	}
	if r.Route("a") == a {
		t.Fatal("a removed route kept its counters")
	}
}
