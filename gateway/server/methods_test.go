package server

import (
	"slices"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/gateway/metrics"
	"github.com/archway-gateway/archway/gateway/protocol"
)

// The method list lives in protocol; config (a leaf, which cannot import it) keeps the names
// a route may list, and metrics labels them. A method added to one and not the others would be
// accepted by validation but never matched, or matched but counted as OTHER.
func TestOneMethodList(t *testing.T) {
	if !slices.Equal(config.StandardMethods, protocol.Methods[:]) {
		t.Errorf("config.StandardMethods %v, protocol.Methods %v", config.StandardMethods, protocol.Methods)
	}
	if !slices.Equal(metrics.Methods[:len(protocol.Methods)], protocol.Methods[:]) || metrics.Methods[len(metrics.Methods)-1] != "OTHER" {
		t.Errorf("metrics.Methods %v", metrics.Methods)
	}
	for i, m := range protocol.Methods {
		if protocol.MethodIndex([]byte(m)) != i {
			t.Errorf("MethodIndex(%s) = %d, want %d", m, protocol.MethodIndex([]byte(m)), i)
		}
	}
}
