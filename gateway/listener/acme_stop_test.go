package listener

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/caddyserver/certmagic"
)

// TestLockTrackingWaitsForRelease: waitUnlocked returns at once with nothing locked, waits
// while a lock is held, and returns true when it is released.
func TestLockTrackingWaitsForRelease(t *testing.T) {
	s := &lockTracking{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	if !s.waitUnlocked(0) {
		t.Fatal("nothing locked, yet waitUnlocked failed")
	}
	ctx := context.Background()
	for _, name := range []string{"issue_cert_a", "issue_cert_b"} {
		if err := s.Lock(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if s.waitUnlocked(time.Millisecond) {
		t.Fatal("waitUnlocked succeeded with two locks held")
	}
	done := make(chan bool, 1)
	go func() { done <- s.waitUnlocked(time.Minute) }()
	if err := s.Unlock(ctx, "issue_cert_a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("waitUnlocked returned with one lock still held")
	case <-time.After(50 * time.Millisecond): // the negative case may only be bounded
	}
	if err := s.Unlock(ctx, "issue_cert_b"); err != nil {
		t.Fatal(err)
	}
	if !<-done {
		t.Fatal("waitUnlocked timed out after every lock was released")
	}
	s.close()
	if err := s.Lock(ctx, "issue_cert_c"); err == nil {
		t.Fatal("a lock was taken after the manager stopped")
	}
	if !s.waitUnlocked(0) {
		t.Fatal("a refused lock was counted")
	}
}

// TestACMEStopReleasesItsStorageLocks: a manager whose order is waiting to retry (the CA cannot
// be reached) holds the order's lock in the storage replicas share; Stop returns only once that
// lock is gone, so no other replica waits it out.
func TestACMEStopReleasesItsStorageLocks(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "acme")
	m, err := NewACME(&config.ACME{
		Hosts:       []string{"shop.test"},
		Directory:   "https://127.0.0.1:1/directory",
		Storage:     storage,
		RenewBefore: config.Duration(720 * time.Hour),
		Challenges:  []config.ACMEChallenge{config.ChallengeTLSALPN01},
	}, ACMEOptions{Listener: "https", TLSAddr: "127.0.0.1:8443"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for len(lockFiles(t, storage)) == 0 {
		if time.Now().After(deadline) {
			m.Stop()
			t.Fatal("the order never took its lock")
		}
		time.Sleep(10 * time.Millisecond) // polling the file system for a condition, not a timing
	}
	m.Stop()
	if locks := lockFiles(t, storage); len(locks) > 0 {
		t.Fatalf("lock files left after Stop: %v", locks)
	}
}

func lockFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".lock") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
