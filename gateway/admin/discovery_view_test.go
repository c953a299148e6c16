package admin

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/archway-gateway/archway/discovery"
)

// TestDiscoveryViewShowsTheErrorCount: docs/discovery.md promises that /upstreams shows how many
// times the source failed, stale or not.
func TestDiscoveryViewShowsTheErrorCount(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		state discovery.State
		want  map[string]any
	}{
		{"stale", discovery.State{Service: "app", Status: discovery.StatusOK, SourceErr: errors.New("consul down"),
			Errors: 7, LastError: errors.New("consul down"), LastErrorAt: at},
			map[string]any{"stale": true, "errors": 7.0, "error": "consul down", "last_error": "consul down"}},
		{"recovered", discovery.State{Service: "app", Status: discovery.StatusOK, Errors: 3,
			LastError: errors.New("consul down"), LastErrorAt: at},
			map[string]any{"stale": false, "errors": 3.0, "last_error": "consul down"}},
		{"never failed", discovery.State{Service: "app", Status: discovery.StatusOK},
			map[string]any{"stale": false, "errors": 0.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(newDiscoveryView(tc.state))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (in %s)", k, got[k], v, b)
				}
			}
		})
	}
}
