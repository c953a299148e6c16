package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateDatabase creates a fresh, empty database on the server for one test and returns its
// DSN. The database is dropped when the test ends (closing any connections the test left open).
// Tests sharing one server this way stay independent and may run in parallel.
func (pg *Postgres) CreateDatabase(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	if err := pg.admin(fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.admin(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(pg.DSN)
	if err != nil {
		t.Fatalf("testenv: parse DSN %q: %v", pg.DSN, err)
	}
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on the server's maintenance database.
func (pg *Postgres) admin(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, stmt)
	return err
}
