package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWKSOptions tunes NewJWKS. Zero fields take the defaults.
type JWKSOptions struct {
	// RefreshUnknownKID limits the fetches a token with an unknown kid may trigger, however many
	// requests carry one, so a flood of made-up kids cannot become a flood of fetches. Default:
	// one fetch per 30 s (burst 1). A caller whose turn is further away than Timeout is refused
	// at once instead of waiting.
	RefreshUnknownKID *rate.Limiter
	// RetryWithoutKeys replaces the limiter's rate while no fetch has brought keys yet (1 s): a
	// service that starts before the users service must not reject every token for 30 s.
	RetryWithoutKeys time.Duration
	// RefreshInterval is how often the set is fetched in the background (5 min).
	RefreshInterval time.Duration
	// Timeout bounds one fetch (5 s).
	Timeout time.Duration
	// HTTPClient fetches the set; a client with Timeout when nil.
	HTTPClient *http.Client
	Logger     *slog.Logger // slog.Default() when nil
}

// JWKS is the key source for a remote JWK Set (the users service's /.well-known/jwks.json),
// built on github.com/MicahParks/keyfunc: keyfunc caches the keys, refetches on an unknown kid
// within the rate limit and keeps the last good keys when a fetch fails. JWKS adds only the
// faster retry while no keys have arrived yet. Safe for concurrent use.
type JWKS struct {
	keys    keyfunc.Keyfunc
	limiter *rate.Limiter
	steady  rate.Limit
	settled atomic.Bool // keys have arrived and the limiter runs at its steady rate
}

var (
	_ Keys = (*JWKS)(nil)
	_ Keys = keyfunc.Keyfunc(nil)
)

// NewJWKS fetches the set at url once (a failure is logged, not returned: the service starts and
// retries) and keeps it fresh in a goroutine that stops when ctx ends.
func NewJWKS(ctx context.Context, url string, opts JWKSOptions) (*JWKS, error) {
	if opts.RefreshUnknownKID == nil {
		opts.RefreshUnknownKID = rate.NewLimiter(rate.Every(30*time.Second), 1)
	}
	if opts.RetryWithoutKeys == 0 {
		opts.RetryWithoutKeys = time.Second
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = 5 * time.Minute
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	j := &JWKS{limiter: opts.RefreshUnknownKID, steady: opts.RefreshUnknownKID.Limit()}
	// Until keys arrive, unknown-kid fetches run at the faster retry rate; set before the first
	// fetch so that no caller sees the steady rate while the set is still empty.
	j.limiter.SetLimit(rate.Every(opts.RetryWithoutKeys))
	remote, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:      opts.HTTPClient,
		HTTPTimeout: opts.Timeout,
		// The wait for the limiter and the fetch that follows share this deadline.
		RateLimitWaitMax: opts.Timeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				opts.Logger.WarnContext(ctx, "jwks fetch failed; keeping the last good keys", "url", u, "error", err.Error())
			}
		},
		RefreshInterval:   opts.RefreshInterval,
		RefreshUnknownKID: j.limiter,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", url, err)
	}
	// The same storage, with keys marked for encryption refused (the override cannot say so); a
	// key without "use" is a signing key.
	if j.keys, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: remote.Storage(),
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}}); err != nil {
		return nil, fmt.Errorf("jwks %s: %w", url, err)
	}
	j.settle(ctx)
	return j, nil
}

// KeyfuncCtx returns keyfunc's lookup of the token's kid.
func (j *JWKS) KeyfuncCtx(ctx context.Context) jwt.Keyfunc {
	lookup := j.keys.KeyfuncCtx(ctx)
	if j.settled.Load() {
		return lookup
	}
	return func(t *jwt.Token) (any, error) {
		key, err := lookup(t)
		j.settle(ctx)
		return key, err
	}
}

// settle switches the limiter to its steady rate once the storage holds keys.
func (j *JWKS) settle(ctx context.Context) {
	if j.settled.Load() {
		return
	}
	if keys, err := j.keys.Storage().KeyReadAll(ctx); err == nil && len(keys) > 0 && !j.settled.Swap(true) {
		j.limiter.SetLimit(j.steady)
	}
}

// staticKeys returns a key source holding only pub under kid, for a service that verifies the
// tokens it issues itself.
func staticKeys(kid string, pub any) (Keys, error) {
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		ALG: jwkset.AlgEdDSA, KID: kid, USE: jwkset.UseSig,
	}})
	if err != nil {
		return nil, fmt.Errorf("static key %q: %w", kid, err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(context.Background(), jwk); err != nil {
		return nil, fmt.Errorf("static key %q: %w", kid, err)
	}
	return keyfunc.New(keyfunc.Options{Storage: store})
}
