package sqldb

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"time"
)

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// Migrate applies the migrations in fsys for this database's engine: the files
// <engine>/NNNN_name.sql (for example sqlite/0001_users.sql and postgres/0001_users.sql), in
// version order, each exactly once. Applied versions are recorded in the table
// <service>_schema_migrations, so services may share one database. Instances starting at once
// are serialized by Locked; each migration runs in that one transaction (DDL is transactional on
// both engines), so a failed migration leaves nothing half-applied.
func (db *DB) Migrate(ctx context.Context, service string, fsys fs.FS) error {
	dir := string(db.engine)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrations for %s: %w", dir, err)
	}
	type migration struct {
		version int
		name    string
	}
	var migrations []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return fmt.Errorf("migration %s/%s: name must be NNNN_name.sql", dir, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		migrations = append(migrations, migration{v, e.Name()})
	}
	sort.Slice(migrations, func(i, j int) bool { return migrations[i].version < migrations[j].version })
	for i := 1; i < len(migrations); i++ {
		if migrations[i].version == migrations[i-1].version {
			return fmt.Errorf("migrations %s and %s share a version", migrations[i-1].name, migrations[i].name)
		}
	}

	table := service + "_schema_migrations"
	if !migrationName.MatchString("0000_" + service + ".sql") {
		return fmt.Errorf("service name %q is not a valid table prefix", service)
	}
	return db.Locked(ctx, "migrate:"+service, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+
			" (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"); err != nil {
			return fmt.Errorf("create %s: %w", table, err)
		}
		applied := map[int]bool{}
		rows, err := tx.Query(ctx, "SELECT version FROM "+table)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("read %s: %w", table, err)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for _, m := range migrations {
			if applied[m.version] {
				continue
			}
			script, err := fs.ReadFile(fsys, path.Join(dir, m.name))
			if err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			// Straight to the driver: a script is not a query with placeholders to rewrite.
			if _, err := tx.tx.ExecContext(ctx, string(script)); err != nil {
				return fmt.Errorf("migration %s/%s: %w", dir, m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, time.Now().UTC()); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// OpenMigrated opens the database at url and applies a service's migrations, kept in fsys under
// "migrations" (see Migrate for the layout); the database is closed again if they fail.
func OpenMigrated(ctx context.Context, url, service string, fsys fs.FS) (*DB, error) {
	db, err := Open(ctx, url)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(fsys, "migrations")
	if err == nil {
		err = db.Migrate(ctx, service, sub)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
