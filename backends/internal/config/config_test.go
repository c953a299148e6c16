package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFlagsOverrideEnvOverrideDefaults(t *testing.T) {
	env := map[string]string{"ADDR": ":9999", "DATABASE_URL": "postgres://x/y", "SHUTDOWN_TIMEOUT": "3s"}
	fs := NewFlagSet("svc")
	fs.SetOutput(io.Discard)
	fs.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c := RegisterCommon(fs, "svc", ":3000")
	if err := fs.Parse([]string{"-database-url", "/tmp/svc.db"}); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9999" || c.DatabaseURL != "/tmp/svc.db" || c.ShutdownTimeout != 3*time.Second ||
		c.MaxBodyBytes != 1<<20 || c.LogLevel != "info" {
		t.Fatalf("config = %+v", c)
	}
	fs2 := NewFlagSet("svc")
	fs2.LookupEnv = func(string) (string, bool) { return "", false }
	if c2 := RegisterCommon(fs2, "svc", ":3000"); fs2.Parse(nil) != nil || c2.DatabaseURL != "./data/svc.db" || c2.Addr != ":3000" {
		t.Fatalf("defaults = %+v", c2)
	}
}

func TestBadEnvironmentValuesNameTheVariable(t *testing.T) {
	env := map[string]string{"MAX_BODY_BYTES": "lots", "READ_TIMEOUT": "soon"}
	fs := NewFlagSet("svc")
	fs.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	RegisterCommon(fs, "svc", ":3000")
	err := fs.Parse(nil)
	if err == nil || !strings.Contains(err.Error(), "MAX_BODY_BYTES") || !strings.Contains(err.Error(), "READ_TIMEOUT") {
		t.Fatalf("Parse = %v; want errors naming both variables", err)
	}
}

func TestLogger(t *testing.T) {
	c := &Common{LogLevel: "verbose"}
	if _, err := c.Logger(io.Discard, "svc"); err == nil {
		t.Fatal("accepted log level verbose")
	}
	var b strings.Builder
	c.LogLevel = "warn"
	log, err := c.Logger(&b, "svc")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), `"service":"svc"`) {
		t.Fatalf("log output %q", b.String())
	}
}
