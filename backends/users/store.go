package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

//go:embed migrations
var migrations embed.FS

// User is a user as the API shows it: never with the password hash.
type User struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	FirstName string    `json:"firstName"`
	LastName  string    `json:"lastName"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// NewUser is what Create stores. Email must already be normalized and PasswordHash a bcrypt hash.
type NewUser struct {
	Email        string
	PasswordHash []byte
	FirstName    string
	LastName     string
	Role         string
}

// Store errors.
var (
	ErrNotFound   = errors.New("user not found")
	ErrEmailTaken = errors.New("email already registered")
)

// Store keeps users in SQLite or PostgreSQL. Safe for concurrent use.
type Store struct {
	db  *sqldb.DB
	now func() time.Time
}

// OpenStore opens the database at url and applies the users migrations.
func OpenStore(ctx context.Context, url string) (*Store, error) {
	db, err := sqldb.OpenMigrated(ctx, url, "users", migrations)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database for /health.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Create stores a new user; ErrEmailTaken when the email is registered already (the unique index
// decides, so concurrent registrations of one email yield exactly one user).
func (s *Store) Create(ctx context.Context, u NewUser) (User, error) {
	created := s.now().UTC().Truncate(time.Microsecond)
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO users (email, password_hash, first_name, last_name, role, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Email, string(u.PasswordHash), u.FirstName, u.LastName, u.Role, created).Scan(&id)
	if sqldb.IsUniqueViolation(err) {
		return User{}, ErrEmailTaken
	}
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", err)
	}
	return User{ID: id, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Role: u.Role, CreatedAt: created}, nil
}

const userColumns = `id, email, first_name, last_name, role, created_at`

func scanUser(row interface{ Scan(...any) error }, extra ...any) (User, error) {
	var u User
	dest := append([]any{&u.ID, &u.Email, &u.FirstName, &u.LastName, &u.Role, &u.CreatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return User{}, ErrNotFound
		}
		return User{}, fmt.Errorf("read user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// ByID returns the user with id, or ErrNotFound.
func (s *Store) ByID(ctx context.Context, id int64) (User, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
}

// ByEmail returns the user with the normalized email and its password hash, or ErrNotFound.
func (s *Store) ByEmail(ctx context.Context, email string) (User, []byte, error) {
	var hash string
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM users WHERE email = ?`, email), &hash)
	if err != nil {
		return User{}, nil, err
	}
	return u, []byte(hash), nil
}

// EnsureAdmin makes the account with email an admin with the given password hash: it creates
// the user, or promotes an existing one and replaces its password. created tells which.
func (s *Store) EnsureAdmin(ctx context.Context, u NewUser) (user User, created bool, err error) {
	u.Role = "admin"
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE users SET role = 'admin', password_hash = ? WHERE email = ?`,
			string(u.PasswordHash), u.Email)
		if err != nil {
			return fmt.Errorf("promote user: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			user, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE email = ?`, u.Email))
			return err
		}
		created = true
		at := s.now().UTC().Truncate(time.Microsecond)
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO users (email, password_hash, first_name, last_name, role, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			u.Email, string(u.PasswordHash), u.FirstName, u.LastName, u.Role, at).Scan(&id); err != nil {
			return fmt.Errorf("insert admin: %w", err)
		}
		user = User{ID: id, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Role: u.Role, CreatedAt: at}
		return nil
	})
	return user, created, err
}
