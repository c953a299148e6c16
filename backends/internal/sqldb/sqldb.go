// Package sqldb opens a service's database, either embedded SQLite (modernc.org/sqlite, no cgo)
// or PostgreSQL (pgx v5), behind one database/sql handle, and applies embedded migrations.
//
// Queries are written once with ? placeholders; on PostgreSQL they are rewritten to $1, $2, ...
// Write SQL both engines accept: INSERT ... ON CONFLICT DO NOTHING, RETURNING, LIMIT/OFFSET,
// and pass times as time.Time in UTC (columns declared TIMESTAMP on SQLite, TIMESTAMPTZ on
// PostgreSQL). Never put a literal ? in a query.
//
// On SQLite every transaction begins IMMEDIATE (takes the write lock at BEGIN), so
// read-modify-write transactions are serialized across connections and processes; on
// PostgreSQL transactions run at READ COMMITTED, so write them as conditional UPDATEs.
package sqldb

import (
	"github.com/archway-gateway/archway/backends/internal/reqctx"
	"github.com/archway-gateway/archway/backends/internal/telemetry"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Engine names a database engine.
type Engine string

// The supported engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// BusyTimeout is how long a SQLite statement waits for another connection's write lock.
const BusyTimeout = 10 * time.Second

// DB is an open database. It is safe for concurrent use; Close it once.
type DB struct {
	sql    *sql.DB
	engine Engine
	// rebound caches ?-to-$n rewrites for PostgreSQL: queries are constants, so this stays small.
	rebound sync.Map
}

// EngineOf tells which engine a database URL selects: postgres:// and postgresql:// are
// PostgreSQL, anything else is a SQLite file path (optionally prefixed sqlite:).
func EngineOf(url string) Engine {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// Open opens the database named by url (see EngineOf) and checks that it answers. For SQLite the
// file's directory is created (mode 0750) when missing, and the database runs in WAL mode with
// foreign keys on.
func Open(ctx context.Context, url string) (*DB, error) {
	var (
		db  *sql.DB
		err error
	)
	engine := EngineOf(url)
	switch engine {
	case Postgres:
		db, err = sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(10)
		db.SetConnMaxIdleTime(5 * time.Minute)
	case SQLite:
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" || strings.ContainsAny(path, "?#") {
			return nil, fmt.Errorf("open sqlite: invalid database file %q", path)
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("open sqlite: create directory: %w", err)
			}
		}
		// busy_timeout first: the pragmas after it may already need a lock.
		dsn := path + "?_pragma=busy_timeout(" + strconv.Itoa(int(BusyTimeout/time.Millisecond)) + ")" +
			"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)" +
			"&_txlock=immediate&_time_format=sqlite"
		db, err = sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		db.SetMaxOpenConns(8)
		db.SetMaxIdleConns(8)
	}
	d := &DB{sql: db, engine: engine}
	if err := d.firstPing(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", engine, err)
	}
	return d, nil
}

// firstPing is Ping, retried while SQLite reports the database busy. A connection's first
// statement runs the DSN's pragmas, and switching a new file to WAL while another process does
// the same fails with SQLITE_BUSY at once: SQLite does not call the busy handler there, so
// busy_timeout does not cover it. Two instances of a service starting together on one file hit it.
func (db *DB) firstPing(ctx context.Context) error {
	deadline := time.Now().Add(BusyTimeout)
	wait := 5 * time.Millisecond
	for {
		err := db.Ping(ctx)
		if err == nil || db.engine != SQLite || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func isBusy(err error) bool {
	var liteErr *sqlite.Error
	return errors.As(err, &liteErr) && liteErr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Engine returns the engine this database runs on.
func (db *DB) Engine() Engine { return db.engine }

// SQL returns the underlying handle, for what this package does not wrap. Queries through it are
// not rewritten.
func (db *DB) SQL() *sql.DB { return db.sql }

// Close closes the database.
func (db *DB) Close() error { return db.sql.Close() }

// Ping checks that the database answers a query; it is the health check.
func (db *DB) Ping(ctx context.Context) error {
	ctx = reqctx.Detach(ctx)
	var one int
	return db.sql.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Exec runs a statement that returns no rows.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, span := telemetry.DB(ctx, db.system(), query)
	res, err := db.sql.ExecContext(ctx, db.rebind(query), args...)
	telemetry.End(span, err)
	return res, err
}

// Query runs a query that returns rows.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx, span := telemetry.DB(ctx, db.system(), query)
	rows, err := db.sql.QueryContext(ctx, db.rebind(query), args...)
	telemetry.End(span, err) // the query ran; reading the rows is the caller's time
	return rows, err
}

// QueryRow runs a query that returns at most one row.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx, span := telemetry.DB(ctx, db.system(), query)
	row := db.sql.QueryRowContext(ctx, db.rebind(query), args...)
	telemetry.End(span, rowErr(row))
	return row
}

// Tx is a transaction begun by DB.InTx. It is not safe for concurrent use.
type Tx struct {
	tx *sql.Tx
	db *DB
}

// Exec runs a statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, span := telemetry.DB(ctx, tx.db.system(), query)
	res, err := tx.tx.ExecContext(ctx, tx.db.rebind(query), args...)
	telemetry.End(span, err)
	return res, err
}

// Query runs a query in the transaction.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx, span := telemetry.DB(ctx, tx.db.system(), query)
	rows, err := tx.tx.QueryContext(ctx, tx.db.rebind(query), args...)
	telemetry.End(span, err)
	return rows, err
}

// QueryRow runs a single-row query in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx, span := telemetry.DB(ctx, tx.db.system(), query)
	row := tx.tx.QueryRowContext(ctx, tx.db.rebind(query), args...)
	telemetry.End(span, rowErr(row))
	return row
}

// system is the engine as OpenTelemetry's db.system.name spells it.
func (db *DB) system() string {
	if db.engine == Postgres {
		return "postgresql"
	}
	return "sqlite"
}

// rowErr is the row's error for its span: no rows is an answer, not a failure.
func rowErr(row *sql.Row) error {
	if err := row.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return nil
}

// Engine returns the engine of the transaction's database.
func (tx *Tx) Engine() Engine { return tx.db.engine }

// InTx runs fn in a transaction: committed when fn returns nil, rolled back otherwise (fn's
// error is returned as is, so sentinel errors survive).
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	ctx = reqctx.Detach(ctx)
	sqlTx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&Tx{tx: sqlTx, db: db}); err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Locked runs fn in a transaction that holds an exclusive lock named name until it ends, across
// every process using the database: a PostgreSQL transaction-level advisory lock, or on SQLite
// the database write lock every transaction takes. Use it for once-only work such as migrations
// and seeding when several instances start at once.
func (db *DB) Locked(ctx context.Context, name string, fn func(tx *Tx) error) error {
	ctx = reqctx.Detach(ctx)
	return db.InTx(ctx, func(tx *Tx) error {
		if db.engine == Postgres {
			h := fnv.New64a()
			h.Write([]byte("archway:" + name))
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", int64(h.Sum64())); err != nil {
				return fmt.Errorf("advisory lock %s: %w", name, err)
			}
		}
		return fn(tx)
	})
}

func (db *DB) rebind(query string) string {
	if db.engine != Postgres {
		return query
	}
	if q, ok := db.rebound.Load(query); ok {
		return q.(string)
	}
	q := Rebind(query)
	db.rebound.Store(query, q)
	return q
}

// Rebind rewrites ? placeholders to PostgreSQL's $1, $2, ..., leaving quoted text alone.
func Rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// IsUniqueViolation reports whether err is a unique or primary-key constraint violation on
// either engine.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		code := liteErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
