// Package sqldbtest runs a test against every database engine sqldb supports: SQLite in a
// temporary file and a real PostgreSQL server started by internal/testenv (or TEST_DATABASE_URL).
// Store contract suites use it so one suite covers both engines.
package sqldbtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/archway-gateway/archway/backends/internal/sqldb"
	"github.com/archway-gateway/archway/internal/testenv"
)

// NewURL returns the URL of a fresh, empty database that lives until the test ends.
type NewURL func(t testing.TB) string

// ForEachEngine runs fn as the subtests "sqlite" and "postgres". Each call of newURL gives a
// fresh database; the PostgreSQL server is started once for the whole call and stopped after.
// Without PostgreSQL installed the postgres subtest skips (fails under CI=true).
func ForEachEngine(t *testing.T, fn func(t *testing.T, newURL NewURL)) {
	t.Run(string(sqldb.SQLite), func(t *testing.T) {
		fn(t, func(t testing.TB) string { return filepath.Join(t.TempDir(), "test.db") })
	})
	t.Run(string(sqldb.Postgres), func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		fn(t, pg.CreateDatabase)
	})
}

// Open opens url and closes it when the test ends.
func Open(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
