// Package config reads a service's settings from command-line flags with environment-variable
// fallbacks: a flag given on the command line wins, else its environment variable, else the
// default. Every flag's usage line names its variable.
//
// Typical use in a service's main:
//
//	fs := config.NewFlagSet("products")
//	common := config.RegisterCommon(fs, "products", ":3002")
//	var usersURL string
//	fs.StringVar(&usersURL, "users-url", "USERS_URL", "http://127.0.0.1:3001", "users service base URL")
//	if err := fs.Parse(os.Args[1:]); err != nil { ... }
package config

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/archway-gateway/archway/backends/internal/telemetry"
)

// FlagSet is a flag.FlagSet whose flags fall back to environment variables. Define flags, then
// call Parse once. Not safe for concurrent use.
type FlagSet struct {
	*flag.FlagSet
	// LookupEnv reads the environment; os.LookupEnv unless replaced before flags are defined.
	LookupEnv func(string) (string, bool)
	envErrs   []error
}

// NewFlagSet returns an empty FlagSet that reports errors (flag.ContinueOnError).
func NewFlagSet(name string) *FlagSet {
	return &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), LookupEnv: os.LookupEnv}
}

// StringVar defines a string flag whose default is the environment variable env when set.
func (f *FlagSet) StringVar(p *string, name, env, def, usage string) {
	if v, ok := f.LookupEnv(env); ok {
		def = v
	}
	f.FlagSet.StringVar(p, name, def, withEnv(usage, env))
}

// IntVar defines an int flag with an environment fallback.
func (f *FlagSet) IntVar(p *int, name, env string, def int, usage string) {
	if v, ok := f.LookupEnv(env); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("environment %s=%q: not an integer", env, v))
		} else {
			def = n
		}
	}
	f.FlagSet.IntVar(p, name, def, withEnv(usage, env))
}

// DurationVar defines a time.Duration flag ("30s", "24h") with an environment fallback.
func (f *FlagSet) DurationVar(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := f.LookupEnv(env); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("environment %s=%q: not a duration", env, v))
		} else {
			def = d
		}
	}
	f.FlagSet.DurationVar(p, name, def, withEnv(usage, env))
}

func withEnv(usage, env string) string { return usage + " (env " + env + ")" }

// Parse parses args and reports environment values that did not parse, naming the variable.
func (f *FlagSet) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	return errors.Join(f.envErrs...)
}

// ParseCommandLine parses a service's arguments the way every service's command line works, and
// says whether to go on: -h printed the usage (exit 0); a bad flag or value, or an argument left
// over, is reported on the flag set's output (exit 2). commands names the service's
// subcommands for that message, or is empty when it has none.
func (f *FlagSet) ParseCommandLine(args []string, commands string) (code int, ok bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(f.Output(), "%s: %v\n", f.Name(), err)
		return 2, false
	}
	if f.NArg() > 0 {
		if commands != "" {
			fmt.Fprintf(f.Output(), "%s: unknown command %q (commands: %s)\n", f.Name(), f.Arg(0), commands)
		} else {
			fmt.Fprintf(f.Output(), "%s: unexpected argument %q\n", f.Name(), f.Arg(0))
		}
		return 2, false
	}
	return 0, true
}

// Common holds the settings every backend service has.
type Common struct {
	Addr            string
	DatabaseURL     string // postgres://... or postgresql://... for PostgreSQL; else a SQLite file
	LogLevel        string
	MaxBodyBytes    int
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	ShutdownTimeout time.Duration
	// Consul is the Consul agent's address; when set the service registers itself there.
	Consul string
	// Advertise is the address others reach the service at, for the registration; empty means
	// the listen address's host (or 127.0.0.1 when it listens on every interface).
	Advertise string
	// TLSCert and TLSKey serve HTTPS; TLSClientCA also requires client certificates from it.
	TLSCert, TLSKey, TLSClientCA string
	// OTLPEndpoint is the trace collector's base URL; empty leaves tracing to the OTEL_*
	// variables (see StartTracing).
	OTLPEndpoint string
}

// RegisterCommon defines the flags every service has on f and returns where Parse puts them:
//
//	-addr              ADDR              listen address (defaultAddr)
//	-database-url      DATABASE_URL      postgres://... or a SQLite file (./data/<service>.db)
//	-log-level         LOG_LEVEL         debug, info, warn, error (info)
//	-max-body-bytes    MAX_BODY_BYTES    largest request body (1 MiB)
//	-read-timeout      READ_TIMEOUT      (10s)
//	-write-timeout     WRITE_TIMEOUT     (10s)
//	-shutdown-timeout  SHUTDOWN_TIMEOUT  grace for in-flight requests on SIGTERM (10s)
//	-consul            CONSUL_HTTP_ADDR  Consul agent to register with (none)
//	-advertise         ADVERTISE_ADDR    host others reach this instance at (the listen host)
//	-tls-cert          TLS_CERT          PEM certificate chain: serve HTTPS (plain HTTP)
//	-tls-key           TLS_KEY           its private key
//	-tls-client-ca     TLS_CLIENT_CA     require client certificates issued by these CAs (none)
func RegisterCommon(f *FlagSet, service, defaultAddr string) *Common {
	c := &Common{}
	f.StringVar(&c.Addr, "addr", "ADDR", defaultAddr, "listen address")
	f.StringVar(&c.DatabaseURL, "database-url", "DATABASE_URL", "./data/"+service+".db",
		"postgres://... for PostgreSQL, else the SQLite database file")
	f.StringVar(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	f.IntVar(&c.MaxBodyBytes, "max-body-bytes", "MAX_BODY_BYTES", 1<<20, "largest accepted request body in bytes")
	f.DurationVar(&c.ReadTimeout, "read-timeout", "READ_TIMEOUT", 10*time.Second, "time allowed to read a request")
	f.DurationVar(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", 10*time.Second, "time allowed to write a response")
	f.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 10*time.Second,
		"how long in-flight requests may finish after SIGTERM")
	f.StringVar(&c.Consul, "consul", "CONSUL_HTTP_ADDR", "", "Consul agent address (host:port); the service registers itself when set")
	f.StringVar(&c.Advertise, "advertise", "ADVERTISE_ADDR", "", "host others reach this instance at, for the Consul registration")
	f.StringVar(&c.TLSCert, "tls-cert", "TLS_CERT", "", "PEM certificate chain file: serve HTTPS instead of plain HTTP")
	f.StringVar(&c.TLSKey, "tls-key", "TLS_KEY", "", "the certificate's PEM private key file")
	f.StringVar(&c.TLSClientCA, "tls-client-ca", "TLS_CLIENT_CA", "", "PEM CA file: require client certificates issued by it (mTLS)")
	// The flag only: its variable is OpenTelemetry's own, which the exporter reads (and which
	// may be a URL for traces alone, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
	f.FlagSet.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "trace collector base URL, e.g. http://127.0.0.1:4318; tracing is off without it or OTEL_EXPORTER_OTLP_ENDPOINT")
	return c
}

// Logger returns a JSON logger writing to w at the configured level, with the service name on
// every line.
func (c *Common) Logger(w io.Writer, service string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	h := telemetry.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	return slog.New(h).With("service", service), nil
}

// StartTracing sets up OpenTelemetry tracing from -otlp-endpoint and the standard OTEL_*
// variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME,
// OTEL_TRACES_SAMPLER[_ARG], OTEL_SDK_DISABLED; see package telemetry) and returns the function
// that flushes it at exit.
func (c *Common) StartTracing(ctx context.Context, service string, log *slog.Logger) (stop func(), err error) {
	return telemetry.Setup(ctx, telemetry.Settings{Service: service, Endpoint: c.OTLPEndpoint}, log)
}
