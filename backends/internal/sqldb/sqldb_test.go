package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/archway-gateway/archway/backends/internal/sqldb"
	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"SELECT '?' FROM t WHERE a = ?", "SELECT '?' FROM t WHERE a = $1"},
		{`SELECT "we?rd" FROM t WHERE a LIKE ? ESCAPE '\'`, `SELECT "we?rd" FROM t WHERE a LIKE $1 ESCAPE '\'`},
	} {
		if got := sqldb.Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestEngineOf(t *testing.T) {
	for url, want := range map[string]sqldb.Engine{
		"postgres://u@h/db":   sqldb.Postgres,
		"postgresql://u@h/db": sqldb.Postgres,
		"./data/users.db":     sqldb.SQLite,
		"sqlite:/tmp/x.db":    sqldb.SQLite,
	} {
		if got := sqldb.EngineOf(url); got != want {
			t.Errorf("EngineOf(%q) = %s; want %s", url, got, want)
		}
	}
}

func TestOpenRejectsBadSQLitePath(t *testing.T) {
	if _, err := sqldb.Open(context.Background(), "sqlite:"); err == nil {
		t.Fatal("Open(sqlite:) succeeded")
	}
	if _, err := sqldb.Open(context.Background(), t.TempDir()+"/x.db?mode=ro"); err == nil {
		t.Fatal("Open with a query string succeeded")
	}
}

func TestEngines(t *testing.T) {
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		t.Run("migrate applies once", func(t *testing.T) {
			db := sqldbtest.Open(t, newURL(t))
			ctx := context.Background()
			for range 2 {
				if err := db.Migrate(ctx, "test", os.DirFS("testdata/ok")); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM test_schema_migrations").Scan(&n); err != nil || n != 2 {
				t.Fatalf("migrations recorded = %d, %v; want 2", n, err)
			}
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM counters").Scan(&n); err != nil || n != 1 {
				t.Fatalf("seed rows = %d, %v; want 1", n, err)
			}
		})

		t.Run("concurrent migrate from separate handles", func(t *testing.T) {
			url := newURL(t)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				db := sqldbtest.Open(t, url)
				wg.Go(func() { errs <- db.Migrate(ctx, "test", os.DirFS("testdata/ok")) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			var n int
			db := sqldbtest.Open(t, url)
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM counters").Scan(&n); err != nil || n != 1 {
				t.Fatalf("seed rows = %d, %v; want 1 (a migration ran twice)", n, err)
			}
		})

		t.Run("failed migration leaves nothing", func(t *testing.T) {
			db := sqldbtest.Open(t, newURL(t))
			ctx := context.Background()
			err := db.Migrate(ctx, "test", os.DirFS("testdata/bad"))
			if err == nil || !strings.Contains(err.Error(), "0002_broken.sql") {
				t.Fatalf("Migrate = %v; want an error naming 0002_broken.sql", err)
			}
			if _, err := db.Exec(ctx, "SELECT 1 FROM items"); err == nil {
				t.Fatal("table items exists after the failed migration run")
			}
		})

		t.Run("unique violation and time round trip", func(t *testing.T) {
			db := sqldbtest.Open(t, newURL(t))
			ctx := context.Background()
			if err := db.Migrate(ctx, "test", os.DirFS("testdata/ok")); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Microsecond)
			if _, err := db.Exec(ctx, "INSERT INTO items (id, name, created_at) VALUES (?, ?, ?)", 1, "a", now); err != nil {
				t.Fatal(err)
			}
			_, err := db.Exec(ctx, "INSERT INTO items (id, name, created_at) VALUES (?, ?, ?)", 2, "a", now)
			if !sqldb.IsUniqueViolation(err) {
				t.Fatalf("duplicate name: err = %v; want a unique violation", err)
			}
			if sqldb.IsUniqueViolation(errors.New("other")) {
				t.Fatal("IsUniqueViolation(other error) = true")
			}
			var got time.Time
			if err := db.QueryRow(ctx, "SELECT created_at FROM items WHERE id = ?", 1).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(now) {
				t.Fatalf("created_at = %v; want %v", got, now)
			}
		})

		t.Run("Locked serializes read-modify-write across handles", func(t *testing.T) {
			url := newURL(t)
			ctx := context.Background()
			if err := sqldbtest.Open(t, url).Migrate(ctx, "test", os.DirFS("testdata/ok")); err != nil {
				t.Fatal(err)
			}
			handles := []*sqldb.DB{sqldbtest.Open(t, url), sqldbtest.Open(t, url)}
			var wg sync.WaitGroup
			const perWorker = 10
			for w := range 6 {
				db := handles[w%len(handles)]
				wg.Go(func() {
					for range perWorker {
						err := db.Locked(ctx, "counter", func(tx *sqldb.Tx) error {
							var v int
							if err := tx.QueryRow(ctx, "SELECT value FROM counters WHERE name = 'hits'").Scan(&v); err != nil {
								return err
							}
							_, err := tx.Exec(ctx, "UPDATE counters SET value = ? WHERE name = 'hits'", v+1)
							return err
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			var v int
			if err := handles[0].QueryRow(ctx, "SELECT value FROM counters WHERE name = 'hits'").Scan(&v); err != nil || v != 6*perWorker {
				t.Fatalf("counter = %d, %v; want %d (lost updates)", v, err, 6*perWorker)
			}
		})

		t.Run("InTx rolls back on error", func(t *testing.T) {
			db := sqldbtest.Open(t, newURL(t))
			ctx := context.Background()
			if err := db.Migrate(ctx, "test", os.DirFS("testdata/ok")); err != nil {
				t.Fatal(err)
			}
			sentinel := errors.New("stop")
			err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE counters SET value = 99"); err != nil {
					return err
				}
				return sentinel
			})
			if !errors.Is(err, sentinel) {
				t.Fatalf("InTx = %v; want the sentinel", err)
			}
			var v int
			if err := db.QueryRow(ctx, "SELECT value FROM counters").Scan(&v); err != nil || v != 0 {
				t.Fatalf("value = %d, %v; want 0 after rollback", v, err)
			}
		})
	})
}

// TestOpenWhileAnotherWriterHoldsTheFile opens a database in rollback-journal mode while another
// connection holds a write lock on it. Switching to WAL then fails with SQLITE_BUSY at once,
// without SQLite calling the busy handler; Open must wait for the writer instead of failing, as
// it must when two instances of a service create their database together.
func TestOpenWhileAnotherWriterHoldsTheFile(t *testing.T) {
	path := t.TempDir() + "/held.db"
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := other.ExecContext(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		db, err := sqldb.Open(ctx, "sqlite:"+path)
		if err == nil {
			db.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("Open returned while another connection held the write lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("Open after the writer committed: %v", err)
	}
}
