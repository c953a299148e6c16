// Command users is the users service: registration, login, user lookup, and the issuer of the
// JWTs every other service verifies (public keys at /.well-known/jwks.json).
//
//	users [flags]                                  serve (default ADDR :3001)
//	users create-admin -email E -password P [flags] create or promote an admin account
//	users install-key -from SECRET [flags]          install a shared signing key (mode 0600) at -jwt-key-file
//
// Run `users -h` for the flags; each has an environment fallback. See docs/backends.md.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/backends/internal/api"
	"github.com/archway-gateway/archway/backends/internal/auth"
	"github.com/archway-gateway/archway/backends/internal/config"
	"github.com/archway-gateway/archway/backends/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the users service's flags.
type settings struct {
	*config.Common
	keyFile    string
	secret     string
	issuer     string
	audience   string
	tokenTTL   time.Duration
	bcryptCost int
}

func register(fs *config.FlagSet) *settings {
	s := &settings{Common: config.RegisterCommon(fs, "users", ":3001")}
	fs.StringVar(&s.keyFile, "jwt-key-file", "JWT_PRIVATE_KEY_FILE", "./data/users-ed25519.pem",
		"Ed25519 private key (PKCS#8 PEM); generated with mode 0600 when missing")
	fs.StringVar(&s.secret, "jwt-secret", "JWT_SECRET", "",
		"HS256 shared secret (at least 32 bytes); when set, tokens are HS256 instead of EdDSA")
	fs.StringVar(&s.issuer, "jwt-issuer", "JWT_ISSUER", auth.DefaultIssuer, "iss claim of issued tokens")
	fs.StringVar(&s.audience, "jwt-audience", "JWT_AUDIENCE", auth.DefaultAudience, "aud claim of issued tokens")
	fs.DurationVar(&s.tokenTTL, "token-ttl", "TOKEN_TTL", 24*time.Hour, "lifetime of issued tokens")
	fs.IntVar(&s.bcryptCost, "bcrypt-cost", "BCRYPT_COST", 10, "bcrypt cost of password hashes (4 to 31)")
	return s
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "create-admin" {
		return createAdmin(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "install-key" {
		return installKey(args[1:], stdout, stderr)
	}
	fs := config.NewFlagSet("users")
	fs.SetOutput(stderr)
	s := register(fs)
	if code, ok := fs.ParseCommandLine(args, "create-admin, install-key"); !ok {
		return code
	}
	if err := serve(ctx, s, stdout); err != nil {
		fmt.Fprintln(stderr, "users:", err)
		return 1
	}
	return 0
}

// tokens builds the issuer and the verifier for the users service's own endpoints.
func tokens(s *settings) (*auth.Issuer, *auth.Verifier, error) {
	cfg := auth.IssuerConfig{Issuer: s.issuer, Audience: s.audience, TTL: s.tokenTTL}
	vcfg := auth.VerifierConfig{Issuer: s.issuer, Audience: s.audience}
	var issuer *auth.Issuer
	if s.secret != "" {
		var err error
		if issuer, err = auth.NewHS256Issuer([]byte(s.secret), cfg); err != nil {
			return nil, nil, err
		}
		vcfg.Secret = []byte(s.secret)
	} else {
		key, err := auth.LoadOrCreateEd25519Key(s.keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("signing key: %w", err)
		}
		issuer = auth.NewEd25519Issuer(key, cfg)
		vcfg.Keys = issuer.Keys()
	}
	verifier, err := auth.NewVerifier(vcfg)
	return issuer, verifier, err
}

func serve(ctx context.Context, s *settings, stdout io.Writer) error {
	log, err := s.Logger(stdout, "users")
	if err != nil {
		return err
	}
	stopTracing, err := s.StartTracing(ctx, "users", log)
	if err != nil {
		return err
	}
	defer stopTracing()
	if s.bcryptCost < 4 || s.bcryptCost > 31 {
		return fmt.Errorf("bcrypt cost %d is outside 4..31", s.bcryptCost)
	}
	issuer, verifier, err := tokens(s)
	if err != nil {
		return err
	}
	store, err := OpenStore(ctx, s.DatabaseURL)
	if err != nil {
		return err
	}
	defer store.Close()
	svc, err := newService(store, issuer, verifier, s.bcryptCost)
	if err != nil {
		return err
	}
	srv := server.New(server.ConfigFrom("users", s.Common, log, store.Ping))
	svc.routes(srv)
	keyID := ""
	if keys := issuer.JWKS().Keys; len(keys) > 0 {
		keyID = keys[0].Kid
	}
	log.InfoContext(ctx, "users service starting", "addr", s.Addr, "engine", string(store.db.Engine()),
		"alg", issuer.Algorithm(), "kid", keyID)
	return srv.ListenAndServe(ctx)
}

func createAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := config.NewFlagSet("users create-admin")
	fs.SetOutput(stderr)
	s := register(fs)
	var email, password, first, last string
	fs.StringVar(&email, "email", "ADMIN_EMAIL", "", "admin email (required)")
	fs.StringVar(&password, "password", "ADMIN_PASSWORD", "", "admin password, at least 8 characters (required)")
	fs.StringVar(&first, "first-name", "ADMIN_FIRST_NAME", "Admin", "first name of a new admin")
	fs.StringVar(&last, "last-name", "ADMIN_LAST_NAME", "User", "last name of a new admin")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "users create-admin:", err)
		return 2
	}
	store, err := OpenStore(ctx, s.DatabaseURL)
	if err != nil {
		fmt.Fprintln(stderr, "users create-admin:", err)
		return 1
	}
	defer store.Close()
	svc := &service{store: store, cost: s.bcryptCost}
	nu, err := svc.validateNewUser(email, password, first, last)
	if err != nil {
		var apiErr *api.Error
		if errors.As(err, &apiErr) {
			fmt.Fprintln(stderr, "users create-admin: -"+flagName(apiErr.Field)+":", strings.TrimPrefix(apiErr.Message, apiErr.Field+": "))
			return 2
		}
		fmt.Fprintln(stderr, "users create-admin:", err)
		return 1
	}
	user, created, err := store.EnsureAdmin(ctx, nu)
	if err != nil {
		fmt.Fprintln(stderr, "users create-admin:", err)
		return 1
	}
	action := "promoted"
	if created {
		action = "created"
	}
	out, _ := json.Marshal(map[string]any{"action": action, "user": user})
	fmt.Fprintln(stdout, string(out))
	return 0
}

// flagName maps a validation field to the create-admin flag that sets it.
func flagName(field string) string {
	switch field {
	case "firstName":
		return "first-name"
	case "lastName":
		return "last-name"
	}
	return field
}

// installKey copies a signing key shared by every replica (a Kubernetes Secret) to the path the
// service reads, with the mode the service demands; deploy/k8s/users.yaml runs it as an init
// container.
func installKey(args []string, stdout, stderr io.Writer) int {
	fs := config.NewFlagSet("users install-key")
	fs.SetOutput(stderr)
	s := register(fs)
	var from string
	fs.StringVar(&from, "from", "JWT_PRIVATE_KEY_SOURCE", "",
		"Ed25519 private key (PKCS#8 PEM) to install at -jwt-key-file (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "users install-key:", err)
		return 2
	}
	if from == "" {
		fmt.Fprintln(stderr, "users install-key: -from (JWT_PRIVATE_KEY_SOURCE) is required")
		return 2
	}
	key, err := auth.InstallEd25519Key(from, s.keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "users install-key:", err)
		return 1
	}
	fmt.Fprintf(stdout, "installed signing key %s at %s\n", auth.Thumbprint(key.Public().(ed25519.PublicKey)), s.keyFile)
	return 0
}
