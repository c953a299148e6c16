package server

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/config"
)

// TestConfigFromCarriesEveryCommonFlag parses the shared flags as a service does and checks that
// each one lands in the server's Config.
func TestConfigFromCarriesEveryCommonFlag(t *testing.T) {
	fs := config.NewFlagSet("svc")
	c := config.RegisterCommon(fs, "svc", ":3999")
	if code, ok := fs.ParseCommandLine([]string{
		"-addr", "127.0.0.1:4001", "-max-body-bytes", "4096",
		"-read-timeout", "3s", "-write-timeout", "4s", "-shutdown-timeout", "5s",
		"-consul", "127.0.0.1:8500", "-advertise", "10.0.0.7",
		"-tls-cert", "c.pem", "-tls-key", "k.pem", "-tls-client-ca", "ca.pem",
	}, ""); !ok {
		t.Fatalf("parse: exit code %d", code)
	}
	log := slog.New(slog.DiscardHandler)
	errDown := errors.New("down")
	got := ConfigFrom("svc", c, log, func(context.Context) error { return errDown })
	want := Config{
		Service: "svc", Addr: "127.0.0.1:4001", Logger: log, MaxBodyBytes: 4096,
		ReadTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second, ShutdownTimeout: 5 * time.Second,
		Consul: "127.0.0.1:8500", Advertise: "10.0.0.7",
		TLSCertFile: "c.pem", TLSKeyFile: "k.pem", TLSClientCAFile: "ca.pem",
	}
	if got.Health == nil || !errors.Is(got.Health(context.Background()), errDown) {
		t.Errorf("Health is not the function given")
	}
	got.Health = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ConfigFrom:\n got %+v\nwant %+v", got, want)
	}
}
