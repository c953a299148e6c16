package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

// TestStoreContract runs the same store behaviour on SQLite and on a real PostgreSQL.
func TestStoreContract(t *testing.T) {
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		open := func(t *testing.T) *Store {
			st, err := OpenStore(context.Background(), newURL(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		ctx := context.Background()
		ana := NewUser{Email: "ana@example.com", PasswordHash: []byte("$2a$04$hash"), FirstName: "Ana", LastName: "García", Role: "customer"}

		t.Run("create and read back", func(t *testing.T) {
			st := open(t)
			u, err := st.Create(ctx, ana)
			if err != nil {
				t.Fatal(err)
			}
			if u.ID <= 0 || u.CreatedAt.IsZero() || u.CreatedAt.Location() != time.UTC {
				t.Fatalf("created = %+v", u)
			}
			byID, err := st.ByID(ctx, u.ID)
			if err != nil || byID != u {
				t.Fatalf("ByID = %+v, %v; want %+v", byID, err, u)
			}
			byEmail, hash, err := st.ByEmail(ctx, "ana@example.com")
			if err != nil || byEmail != u || string(hash) != "$2a$04$hash" {
				t.Fatalf("ByEmail = %+v, %q, %v", byEmail, hash, err)
			}
			second, err := st.Create(ctx, NewUser{Email: "bo@example.com", PasswordHash: []byte("h"), FirstName: "Bo", LastName: "B", Role: "customer"})
			if err != nil || second.ID <= u.ID {
				t.Fatalf("second user = %+v, %v", second, err)
			}
		})

		t.Run("not found", func(t *testing.T) {
			st := open(t)
			if _, err := st.ByID(ctx, 999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("ByID = %v", err)
			}
			if _, _, err := st.ByEmail(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("ByEmail = %v", err)
			}
		})

		t.Run("role is constrained", func(t *testing.T) {
			st := open(t)
			bad := ana
			bad.Role = "root"
			if _, err := st.Create(ctx, bad); err == nil {
				t.Fatal("stored role root")
			}
		})

		t.Run("concurrent duplicate registration yields one user", func(t *testing.T) {
			st := open(t)
			var created, taken atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					_, err := st.Create(ctx, ana)
					switch {
					case err == nil:
						created.Add(1)
					case errors.Is(err, ErrEmailTaken):
						taken.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if created.Load() != 1 || taken.Load() != 19 {
				t.Fatalf("created %d, taken %d; want 1 and 19", created.Load(), taken.Load())
			}
		})

		t.Run("EnsureAdmin creates, then promotes", func(t *testing.T) {
			st := open(t)
			admin, created, err := st.EnsureAdmin(ctx, NewUser{Email: "root@example.com", PasswordHash: []byte("h1"), FirstName: "R", LastName: "T"})
			if err != nil || !created || admin.Role != "admin" {
				t.Fatalf("EnsureAdmin new = %+v, %v, %v", admin, created, err)
			}
			u, _ := st.Create(ctx, ana)
			promoted, created, err := st.EnsureAdmin(ctx, NewUser{Email: ana.Email, PasswordHash: []byte("h2"), FirstName: "X", LastName: "Y"})
			if err != nil || created || promoted.ID != u.ID || promoted.Role != "admin" || promoted.FirstName != "Ana" {
				t.Fatalf("EnsureAdmin existing = %+v, %v, %v", promoted, created, err)
			}
			if _, hash, _ := st.ByEmail(ctx, ana.Email); string(hash) != "h2" {
				t.Fatalf("password not replaced: %q", hash)
			}
		})

		t.Run("migrations are idempotent across restarts", func(t *testing.T) {
			url := newURL(t)
			for range 2 {
				st, err := OpenStore(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
			}
		})
	})
}
