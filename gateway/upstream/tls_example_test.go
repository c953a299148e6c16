package upstream_test

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/upstream"
)

// An HTTP/2 transport to the same upstream reuses its TLS settings and changes only ALPN.
func ExampleTLSConfig() {
	base, err := upstream.TLSConfig(&config.UpstreamTLS{MinVersion: "1.3"}, time.Now())
	if err != nil {
		panic(err)
	}
	target := upstream.TargetTLSConfig(base, "products.internal:8443")
	fmt.Println(target.ServerName, target.MinVersion == tls.VersionTLS13, target.NextProtos, target.ClientSessionCache != nil)

	h2 := target.Clone()
	h2.NextProtos = []string{"h2"}
	fmt.Println(h2.NextProtos, base.NextProtos)
	// Output:
	// products.internal true [http/1.1] true
	// [h2] [http/1.1]
}
