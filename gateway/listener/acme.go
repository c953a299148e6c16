package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
)

// ACMERenewCheckInterval is how often certificates are checked for renewal (and how often a
// failed renewal may be retried once its back-off has passed). Tests shorten it.
var ACMERenewCheckInterval = certmagic.DefaultRenewCheckInterval

// ACMEOptions place an ACME manager: which listener it serves and the ports the gateway answers
// challenges on.
type ACMEOptions struct {
	Listener string
	// HTTPAddr is the first plain listener's address (HTTP-01), empty when there is none;
	// TLSAddr is the TLS listener's own address (TLS-ALPN-01).
	HTTPAddr, TLSAddr string
	Logger            *slog.Logger
}

// ACMEStats count a listener's certificate orders; they outlive the managers a reload replaces.
type ACMEStats struct {
	Obtained, Renewed             atomic.Uint64
	ObtainFailures, RenewFailures atomic.Uint64
}

// ACME obtains and renews the certificates of one TLS listener with certmagic, and answers the
// challenges for them. Made by NewACME when a configuration is prepared (nothing runs yet), it
// starts with Start once the configuration is applied and stops with Stop or its context. The
// certificates it serves come from certmagic's cache, which reads and writes the shared storage
// directory: a lock there lets one replica order while the others wait and load the result.
// Safe for concurrent use after Start.
type ACME struct {
	conf       config.ACME
	opts       ACMEOptions
	httpPort   int
	tlsPort    int
	roots      *x509.CertPool
	stats      *ACMEStats
	logger     *slog.Logger
	hosts      map[string]bool
	configured []string

	startOnce sync.Once
	stopOnce  sync.Once
	// setup is held while start wires the cache, config and issuer together: the cache's
	// maintenance goroutine (running from NewCache on) may ask configFor before that is done.
	setup   sync.Mutex
	stop    context.CancelFunc
	stopped chan struct{}
	storage *lockTracking
	cache   *certmagic.Cache
	magic   *certmagic.Config
	issuer  *certmagic.ACMEIssuer
}

// NewACME checks what it can of a at load (the CA root file, the storage directory) and returns
// a manager that has not started. stats carries counters over from the manager it replaces;
// nil starts new ones.
func NewACME(a *config.ACME, opts ACMEOptions, stats *ACMEStats) (*ACME, error) {
	m := &ACME{conf: *a, opts: opts, stats: stats, hosts: map[string]bool{}, stopped: make(chan struct{}),
		storage: &lockTracking{Storage: &certmagic.FileStorage{Path: a.Storage}}}
	if m.stats == nil {
		m.stats = &ACMEStats{}
	}
	m.logger = opts.Logger
	if m.logger == nil {
		m.logger = slog.Default()
	}
	m.logger = m.logger.With("component", "acme", "listener", opts.Listener)
	for _, h := range a.Hosts {
		m.hosts[h] = true
	}
	m.configured = append([]string(nil), a.Hosts...)
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("acme ca_root %s: %w", a.CARoot, err)
		}
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme ca_root %s: no PEM certificate in it", a.CARoot)
		}
	}
	if err := os.MkdirAll(a.Storage, 0o700); err != nil {
		return nil, fmt.Errorf("acme storage %s: %w", a.Storage, err)
	}
	var err error
	if a.Offers(config.ChallengeHTTP01) && opts.HTTPAddr != "" {
		if m.httpPort, err = portOf(opts.HTTPAddr); err != nil {
			return nil, err
		}
	}
	if m.tlsPort, err = portOf(opts.TLSAddr); err != nil {
		return nil, err
	}
	return m, nil
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("acme: listener address %q: %w", addr, err)
	}
	return strconv.Atoi(p)
}

// Same reports whether a and opts describe this manager, so a reload keeps it (and its
// certificates and pending orders) instead of starting over.
func (m *ACME) Same(a *config.ACME, opts ACMEOptions) bool {
	return reflect.DeepEqual(m.conf, *a) && m.opts.HTTPAddr == opts.HTTPAddr && m.opts.TLSAddr == opts.TLSAddr && m.opts.Listener == opts.Listener
}

// Stats returns the manager's counters.
func (m *ACME) Stats() *ACMEStats { return m.stats }

// Start loads the stored certificates and orders the missing ones in the background; failed
// orders are retried with back-off (1, 2, 2, 5, 10 minutes, ... up to 30 days). It returns at
// once. Everything it starts stops when ctx ends or Stop is called. Only the first call does
// anything.
func (m *ACME) Start(ctx context.Context) {
	m.startOnce.Do(func() { m.start(ctx) })
}

func (m *ACME) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	m.stop = cancel
	m.setup.Lock()
	defer m.setup.Unlock()
	zl := newZapLogger(m.logger)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(c certmagic.Certificate) (*certmagic.Config, error) { return m.configFor(c), nil },
		RenewCheckInterval: ACMERenewCheckInterval,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, m.template(certmagic.DefaultRenewalWindowRatio))
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      m.conf.Directory,
		Email:                   m.conf.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    m.httpPort == 0,
		DisableTLSALPNChallenge: !m.conf.Offers(config.ChallengeTLSALPN01),
		// The gateway's own listeners answer the challenges. certmagic tries to bind these
		// ports first; finding them in use (by us), it leaves the answering to
		// HandleHTTPChallenge and GetCertificate below.
		AltHTTPPort:    m.httpPort,
		AltTLSALPNPort: m.tlsPort,
		TrustedRoots:   m.roots,
		Logger:         zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	go func() {
		defer close(m.stopped)
		if err := m.magic.ManageAsync(ctx, m.configured); err != nil {
			m.logger.Error("acme: managing certificates", "hosts", m.configured, "error", err.Error())
		}
		<-ctx.Done()
		m.cache.Stop()
	}()
}

// Stop ends the manager's work: pending orders are abandoned (their locks in storage released)
// and the renewal loop stops. Certificates already handed out keep serving their connections.
func (m *ACME) Stop() {
	m.stopOnce.Do(func() {
		if m.stop == nil { // never started
			close(m.stopped)
			return
		}
		m.stop()
		<-m.stopped
		m.storage.close()
		// An order in flight when the context ended still holds its lock in the shared
		// storage until certmagic's job notices and releases it. Waiting for that keeps a
		// stopped manager from leaving a lock another replica would wait out.
		if !m.storage.waitUnlocked(acmeStopLockWait) {
			m.logger.Warn("acme: an order still held its storage lock when the manager stopped", "storage", m.conf.Storage)
		}
	})
}

// Done is closed once the manager's work has ended (after Stop, or after the context Start was
// given ended).
func (m *ACME) Done() <-chan struct{} { return m.stopped }

// acmeStopLockWait bounds how long Stop waits for certmagic's jobs to release their locks.
const acmeStopLockWait = 10 * time.Second

// lockTracking is certmagic's storage with a count of the locks certmagic holds or is taking in
// it, so Stop can wait for them to be released. Safe for concurrent use.
type lockTracking struct {
	certmagic.Storage
	mu     sync.Mutex
	held   int
	closed bool
	free   chan struct{} // closed while held is 0; replaced when a lock is taken
}

// Lock counts the lock from the moment it is asked for: the lock file appears while the
// storage's Lock is still running.
func (s *lockTracking) Lock(ctx context.Context, name string) error {
	if !s.acquire() {
		return errACMEStopped
	}
	if err := s.Storage.Lock(ctx, name); err != nil {
		s.release()
		return err
	}
	return nil
}

func (s *lockTracking) Unlock(ctx context.Context, name string) error {
	err := s.Storage.Unlock(ctx, name)
	s.release()
	return err
}

// acquire counts a lock being taken, unless the manager has stopped.
func (s *lockTracking) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.held == 0 {
		s.free = make(chan struct{})
	}
	s.held++
	return true
}

// close refuses every later lock: a job that starts after Stop cancelled it takes none.
func (s *lockTracking) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

var errACMEStopped = errors.New("acme: the certificate manager has stopped")

func (s *lockTracking) release() {
	s.mu.Lock()
	if s.held > 0 {
		s.held--
		if s.held == 0 {
			close(s.free)
		}
	}
	s.mu.Unlock()
}

var _ certmagic.Storage = (*lockTracking)(nil)

// waitUnlocked waits up to d for every lock to be released and reports whether they were.
func (s *lockTracking) waitUnlocked(d time.Duration) bool {
	s.mu.Lock()
	if s.held == 0 {
		s.mu.Unlock()
		return true
	}
	free := s.free
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-free:
		return true
	case <-t.C:
		return false
	}
}

// template is the certmagic configuration with the given renewal window.
func (m *ACME) template(ratio float64) certmagic.Config {
	c := certmagic.Config{
		RenewalWindowRatio: ratio,
		Storage:            m.storage,
		Logger:             newZapLogger(m.logger),
		OnEvent:            m.onEvent,
		ShouldEmitFunc:     func(event string) bool { return event == "cert_obtained" || event == "cert_failed" },
	}
	if m.issuer != nil {
		c.Issuers = []certmagic.Issuer{m.issuer}
	}
	return c
}

// configFor is the configuration the renewal loop checks cert with: certmagic expresses the
// renewal window as a share of the lifetime, renew_before as a time before expiry.
func (m *ACME) configFor(cert certmagic.Certificate) *certmagic.Config {
	m.setup.Lock()
	defer m.setup.Unlock()
	ratio := certmagic.DefaultRenewalWindowRatio
	if leaf := cert.Leaf; leaf != nil {
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 0 {
			ratio = min(max(float64(m.conf.RenewBefore.D())/float64(life), 0.01), 0.99)
		}
	}
	return certmagic.New(m.cache, m.template(ratio))
}

func (m *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	renewal, _ := data["renewal"].(bool)
	id, _ := data["identifier"].(string)
	switch event {
	case "cert_obtained":
		if renewal {
			m.stats.Renewed.Add(1)
		} else {
			m.stats.Obtained.Add(1)
		}
		m.logger.Info("acme: certificate stored", "host", id, "renewal", renewal)
	case "cert_failed":
		if renewal {
			m.stats.RenewFailures.Add(1)
		} else {
			m.stats.ObtainFailures.Add(1)
		}
		msg := "unknown error"
		if err, ok := data["error"].(error); ok {
			msg = err.Error()
		}
		m.logger.Error("acme: order failed; the certificates in use keep serving, and it is retried with back-off", "host", id, "renewal", renewal, "error", msg)
	}
	return nil
}

// Certificates are the managed certificates in memory (the newest per host), for metrics.
func (m *ACME) Certificates() []*Certificate {
	if m.cache == nil {
		return nil
	}
	var out []*Certificate
	for _, h := range m.configured {
		var best *certmagic.Certificate
		for _, c := range m.cache.AllMatchingCertificates(h) {
			if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter)) {
				best = &c
			}
		}
		if best != nil {
			out = append(out, &Certificate{Name: h, NotAfter: best.Leaf.NotAfter, TLS: &best.Certificate})
		}
	}
	return out
}

// NextProtos are the ALPN protocols the listener adds for ACME: acme-tls/1 when TLS-ALPN-01 is
// offered. Only a CA validating a challenge offers it, and it offers nothing else.
func (m *ACME) NextProtos() []string {
	if m.conf.Offers(config.ChallengeTLSALPN01) {
		return []string{acmez.ACMETLS1Protocol}
	}
	return nil
}

// HTTPChallenge returns the issuer that answers HTTP-01 challenges, or nil before Start.
func (m *ACME) HTTPChallenge() *certmagic.ACMEIssuer {
	if m.httpPort == 0 {
		return nil
	}
	return m.issuer
}

// Source combines the manager's certificates with the listener's files under one
// CertificateSource; files may be nil.
func (m *ACME) Source(files *FileCertificates) CertificateSource {
	return &acmeSource{acme: m, files: files}
}

// acmeSource chooses by SNI: a file certificate naming the host exactly, then the ACME
// certificate of a managed host, then a file wildcard, then the default (the first file, or the
// first managed host's certificate when there are no files). A TLS-ALPN-01 validation gets its
// challenge certificate.
type acmeSource struct {
	acme  *ACME
	files *FileCertificates
}

var _ CertificateSource = (*acmeSource)(nil)

func (s *acmeSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := s.acme
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol {
		return m.magic.GetCertificate(hello)
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if s.files != nil && name != "" {
		if c := supported(hello, s.files.exact[name]); c != nil {
			return c, nil
		}
	}
	if m.hosts[name] {
		if c, err := m.magic.GetCertificate(hello); err == nil && c != nil && len(c.Certificate) > 0 {
			return c, nil
		}
	}
	if s.files != nil {
		return s.files.GetCertificate(hello)
	}
	// No files: a client without SNI (or asking for another name) gets the first managed
	// host's certificate, as it would get the first file.
	for _, h := range m.configured {
		if certs := m.cache.AllMatchingCertificates(h); len(certs) > 0 {
			return &certs[0].Certificate, nil
		}
	}
	return nil, fmt.Errorf("%w: no certificate for %q yet (ACME order pending)", ErrCertificate, hello.ServerName)
}
