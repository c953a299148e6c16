package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Product is a catalog entry as the API shows it.
type Product struct {
	ID          int64       `json:"id"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Price       money.Cents `json:"price"`
	Category    string      `json:"category"`
	Inventory   int64       `json:"inventory"`
	CreatedAt   time.Time   `json:"created_at"`
}

// ProductInput is what Create and Update store. A nil Inventory leaves the stock unchanged on
// Update and means 0 on Create.
type ProductInput struct {
	Name        string
	Description string
	Price       money.Cents
	Category    string
	Inventory   *int64
}

// ListFilter selects a page of products. Category matches exactly, ignoring case and accents;
// Search matches a substring of the name or description, ignoring case and accents.
type ListFilter struct {
	Category string
	Search   string
	Limit    int
	Offset   int
}

// Reservation is the state of one order's hold on one product's stock.
type Reservation struct {
	OrderID   string `json:"order_id"`
	ProductID int64  `json:"product_id"`
	Quantity  int64  `json:"quantity"`
	Status    string `json:"status"` // "reserved" or "released"
	// Inventory is the product's stock after the call.
	Inventory int64 `json:"inventory"`
	// Replayed is true when the call changed nothing because an identical one already had.
	Replayed bool `json:"replayed"`
}

// Reservation statuses.
const (
	StatusReserved = "reserved"
	StatusReleased = "released"
)

// Store errors.
var (
	ErrNotFound          = errors.New("product not found")
	ErrInsufficientStock = errors.New("insufficient stock")
	ErrNoReservation     = errors.New("no reservation for this order and product")
	// ErrReservationConflict: the (order, product) pair is already used differently: another
	// quantity, another user, or a reservation that was released.
	ErrReservationConflict = errors.New("reservation conflict")
)

// Store keeps products and reservations in SQLite or PostgreSQL. Safe for concurrent use, and
// for several processes sharing one database.
type Store struct {
	db  *sqldb.DB
	now func() time.Time
}

// OpenStore opens the database at url and applies the products migrations.
func OpenStore(ctx context.Context, url string) (*Store, error) {
	db, err := sqldb.OpenMigrated(ctx, url, "products", migrations)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database for /health.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

func (s *Store) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// fold lower-cases s and strips accents ("Mecánico" -> "mecanico"), the form search_text and
// category_key hold and queries are compared in.
func fold(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

func searchText(name, description string) string { return fold(name) + "\n" + fold(description) }

// escapeLike escapes LIKE wildcards so user input matches literally (with ESCAPE '\').
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

const productColumns = `id, name, description, price_cents, category, inventory, created_at`

func scanProduct(row interface{ Scan(...any) error }) (Product, error) {
	var p Product
	var price int64
	if err := row.Scan(&p.ID, &p.Name, &p.Description, &price, &p.Category, &p.Inventory, &p.CreatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Product{}, ErrNotFound
		}
		return Product{}, fmt.Errorf("read product: %w", err)
	}
	p.Price = money.Cents(price)
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

// List returns one page of products in id order and the number of products matching the filter.
func (s *Store) List(ctx context.Context, f ListFilter) ([]Product, int, error) {
	var where []string
	var args []any
	if f.Category != "" {
		where = append(where, "category_key = ?")
		args = append(args, fold(f.Category))
	}
	if f.Search != "" {
		where = append(where, `search_text LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(fold(f.Search))+"%")
	}
	clause := ""
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM products"+clause, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count products: %w", err)
	}
	rows, err := s.db.Query(ctx, "SELECT "+productColumns+" FROM products"+clause+" ORDER BY id LIMIT ? OFFSET ?",
		append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	products := []Product{}
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, 0, err
		}
		products = append(products, p)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list products: %w", err)
	}
	return products, total, nil
}

// Get returns the product with id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id int64) (Product, error) {
	return scanProduct(s.db.QueryRow(ctx, "SELECT "+productColumns+" FROM products WHERE id = ?", id))
}

// Create stores a new product.
func (s *Store) Create(ctx context.Context, in ProductInput) (Product, error) {
	var inventory int64
	if in.Inventory != nil {
		inventory = *in.Inventory
	}
	now := s.timestamp()
	var id int64
	err := s.db.QueryRow(ctx, `INSERT INTO products
		(name, description, price_cents, category, inventory, search_text, category_key, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		in.Name, in.Description, int64(in.Price), in.Category, inventory,
		searchText(in.Name, in.Description), fold(in.Category), now, now).Scan(&id)
	if err != nil {
		return Product{}, fmt.Errorf("insert product: %w", err)
	}
	return Product{ID: id, Name: in.Name, Description: in.Description, Price: in.Price, Category: in.Category,
		Inventory: inventory, CreatedAt: now}, nil
}

// Update replaces a product's fields; a nil Inventory keeps the stock. ErrNotFound when absent.
func (s *Store) Update(ctx context.Context, id int64, in ProductInput) (Product, error) {
	now := s.timestamp()
	query := `UPDATE products SET name = ?, description = ?, price_cents = ?, category = ?,
		search_text = ?, category_key = ?, updated_at = ?`
	args := []any{in.Name, in.Description, int64(in.Price), in.Category,
		searchText(in.Name, in.Description), fold(in.Category), now}
	if in.Inventory != nil {
		query += ", inventory = ?"
		args = append(args, *in.Inventory)
	}
	return scanProduct(s.db.QueryRow(ctx, query+" WHERE id = ? RETURNING "+productColumns, append(args, id)...))
}

// SetInventory sets a product's stock to n (an admin's count, not a delta).
func (s *Store) SetInventory(ctx context.Context, id, n int64) (Product, error) {
	return scanProduct(s.db.QueryRow(ctx, "UPDATE products SET inventory = ?, updated_at = ? WHERE id = ? RETURNING "+productColumns,
		n, s.timestamp(), id))
}

// Reserve takes quantity units of the product's stock for the order, atomically: either the
// reservation is recorded and the stock decremented, or neither (ErrInsufficientStock,
// ErrNotFound). It is idempotent per (order, product): repeating an identical reservation
// returns it with Replayed set and takes nothing more; a different quantity or user, or a
// reservation already released, is ErrReservationConflict.
func (s *Store) Reserve(ctx context.Context, productID int64, orderID, userID string, quantity int64) (Reservation, error) {
	res := Reservation{OrderID: orderID, ProductID: productID, Quantity: quantity, Status: StatusReserved}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT inventory FROM products WHERE id = ?", productID).Scan(&res.Inventory); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return fmt.Errorf("read product: %w", err)
		}
		// The primary key decides which of two concurrent identical reservations records it;
		// on PostgreSQL the second waits here for the first to commit or roll back.
		ins, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, product_id, quantity, user_id, status, created_at)
			VALUES (?, ?, ?, ?, 'reserved', ?) ON CONFLICT (order_id, product_id) DO NOTHING`,
			orderID, productID, quantity, userID, s.timestamp())
		if err != nil {
			return fmt.Errorf("record reservation: %w", err)
		}
		if n, err := ins.RowsAffected(); err != nil {
			return fmt.Errorf("record reservation: %w", err)
		} else if n == 0 {
			return s.replayReserve(ctx, tx, &res, userID)
		}
		// One conditional UPDATE: the row lock plus the re-checked condition keep the stock
		// from going negative however many reservations race.
		err = tx.QueryRow(ctx, `UPDATE products SET inventory = inventory - ?, updated_at = ?
			WHERE id = ? AND inventory >= ? RETURNING inventory`,
			quantity, s.timestamp(), productID, quantity).Scan(&res.Inventory)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrInsufficientStock // rolls back the reservation row too
		}
		if err != nil {
			return fmt.Errorf("take stock: %w", err)
		}
		return nil
	})
	if err != nil {
		return Reservation{}, err
	}
	return res, nil
}

func (s *Store) replayReserve(ctx context.Context, tx *sqldb.Tx, res *Reservation, userID string) error {
	var quantity int64
	var owner, status string
	if err := tx.QueryRow(ctx, "SELECT quantity, user_id, status FROM reservations WHERE order_id = ? AND product_id = ?",
		res.OrderID, res.ProductID).Scan(&quantity, &owner, &status); err != nil {
		return fmt.Errorf("read reservation: %w", err)
	}
	switch {
	case owner != userID:
		return fmt.Errorf("%w: order %q is reserved by another user", ErrReservationConflict, res.OrderID)
	case status != StatusReserved:
		return fmt.Errorf("%w: the reservation for order %q was released", ErrReservationConflict, res.OrderID)
	case quantity != res.Quantity:
		return fmt.Errorf("%w: order %q already reserved %d", ErrReservationConflict, res.OrderID, quantity)
	}
	res.Replayed = true
	return tx.QueryRow(ctx, "SELECT inventory FROM products WHERE id = ?", res.ProductID).Scan(&res.Inventory)
}

// Release returns what the order reserved of the product to stock, once. Repeating it returns
// the released reservation with Replayed set and changes nothing. quantity, when not nil, must
// equal the reserved quantity (ErrReservationConflict otherwise). Only the user who reserved
// or an admin may release; for anyone else, as for a missing reservation, it is
// ErrNoReservation.
func (s *Store) Release(ctx context.Context, productID int64, orderID, userID string, admin bool, quantity *int64) (Reservation, error) {
	res := Reservation{OrderID: orderID, ProductID: productID, Status: StatusReleased}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var owner, status string
		err := tx.QueryRow(ctx, "SELECT quantity, user_id, status FROM reservations WHERE order_id = ? AND product_id = ?",
			orderID, productID).Scan(&res.Quantity, &owner, &status)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && owner != userID && !admin) {
			return ErrNoReservation
		}
		if err != nil {
			return fmt.Errorf("read reservation: %w", err)
		}
		if quantity != nil && *quantity != res.Quantity {
			return fmt.Errorf("%w: order %q reserved %d, not %d", ErrReservationConflict, orderID, res.Quantity, *quantity)
		}
		// Conditional on the status, so of two concurrent releases exactly one returns stock.
		upd, err := tx.Exec(ctx, `UPDATE reservations SET status = 'released', released_at = ?
			WHERE order_id = ? AND product_id = ? AND status = 'reserved'`, s.timestamp(), orderID, productID)
		if err != nil {
			return fmt.Errorf("release reservation: %w", err)
		}
		if n, err := upd.RowsAffected(); err != nil {
			return fmt.Errorf("release reservation: %w", err)
		} else if n == 0 {
			res.Replayed = true
			return tx.QueryRow(ctx, "SELECT inventory FROM products WHERE id = ?", productID).Scan(&res.Inventory)
		}
		return tx.QueryRow(ctx, `UPDATE products SET inventory = inventory + ?, updated_at = ?
			WHERE id = ? RETURNING inventory`, res.Quantity, s.timestamp(), productID).Scan(&res.Inventory)
	})
	if err != nil {
		return Reservation{}, err
	}
	return res, nil
}

// CatalogItem is one product of the seed catalog.
type CatalogItem struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Price       money.Cents `json:"price"`
	Category    string      `json:"category"`
	Inventory   int64       `json:"inventory"`
}

// Seed inserts the catalog into an empty products table and returns how many products it
// inserted (0 when there were products already). With reset it first deletes every product and
// reservation and restarts the ids, so the catalog gets ids 1..n again. Instances starting at
// once against one database are serialized, so the catalog is never inserted twice.
func (s *Store) Seed(ctx context.Context, catalog []CatalogItem, reset bool) (int, error) {
	inserted := 0
	err := s.db.Locked(ctx, "seed:products", func(tx *sqldb.Tx) error {
		if reset {
			stmts := []string{"TRUNCATE reservations, products RESTART IDENTITY"}
			if tx.Engine() == sqldb.SQLite {
				stmts = []string{"DELETE FROM reservations", "DELETE FROM products",
					"DELETE FROM sqlite_sequence WHERE name = 'products'"}
			}
			for _, stmt := range stmts {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("reset catalog: %w", err)
				}
			}
		}
		var count int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM products").Scan(&count); err != nil {
			return fmt.Errorf("count products: %w", err)
		}
		if count > 0 {
			return nil
		}
		now := s.timestamp()
		for _, it := range catalog {
			if _, err := tx.Exec(ctx, `INSERT INTO products
				(name, description, price_cents, category, inventory, search_text, category_key, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				it.Name, it.Description, int64(it.Price), it.Category, it.Inventory,
				searchText(it.Name, it.Description), fold(it.Category), now, now); err != nil {
				return fmt.Errorf("seed %q: %w", it.Name, err)
			}
			inserted++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}
