package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/archway-gateway/archway/backends/internal/money"
	"github.com/archway-gateway/archway/backends/internal/sqldb/sqldbtest"
)

func openStore(t testing.TB, url string) *Store {
	t.Helper()
	st, err := OpenStore(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func seeded(t testing.TB, url string) *Store {
	t.Helper()
	st := openStore(t, url)
	catalog, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Seed(context.Background(), catalog, false); err != nil {
		t.Fatal(err)
	}
	return st
}

func ptr[T any](v T) *T { return &v }

// TestStoreContract runs the same store behaviour on SQLite and on a real PostgreSQL.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	sqldbtest.ForEachEngine(t, func(t *testing.T, newURL sqldbtest.NewURL) {
		t.Run("seed inserts the catalog once with exact prices", func(t *testing.T) {
			st := seeded(t, newURL(t))
			catalog, _ := Catalog()
			if n, err := st.Seed(ctx, catalog, false); err != nil || n != 0 {
				t.Fatalf("second Seed = %d, %v; want 0", n, err)
			}
			products, total, err := st.List(ctx, ListFilter{Limit: 100})
			if err != nil || total != 10 || len(products) != 10 {
				t.Fatalf("List = %d products, total %d, %v; want 10", len(products), total, err)
			}
			for i, p := range products {
				if p.ID != int64(i+1) || p.Name != catalog[i].Name || p.Price != catalog[i].Price || p.Inventory != catalog[i].Inventory {
					t.Fatalf("product %d = %+v; want %+v with id %d", i, p, catalog[i], i+1)
				}
			}
			if products[0].Price != 129999 || products[0].Price.String() != "1299.99" {
				t.Fatalf("Laptop Gaming price = %d", products[0].Price)
			}
		})

		t.Run("concurrent seeding from separate handles seeds once", func(t *testing.T) {
			url := newURL(t)
			catalog, _ := Catalog()
			stores := []*Store{openStore(t, url), openStore(t, url), openStore(t, url), openStore(t, url)}
			var inserted atomic.Int32
			var wg sync.WaitGroup
			for _, st := range stores {
				wg.Go(func() {
					n, err := st.Seed(ctx, catalog, false)
					if err != nil {
						t.Error(err)
					}
					inserted.Add(int32(n))
				})
			}
			wg.Wait()
			if _, total, _ := stores[0].List(ctx, ListFilter{Limit: 1}); total != 10 || inserted.Load() != 10 {
				t.Fatalf("total %d, inserted %d; want 10 and 10", total, inserted.Load())
			}
		})

		t.Run("reset restores the catalog and ids", func(t *testing.T) {
			st := seeded(t, newURL(t))
			if _, err := st.Create(ctx, ProductInput{Name: "Extra", Price: 100, Category: "Misc"}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Reserve(ctx, 1, "o-1", "5", 3); err != nil {
				t.Fatal(err)
			}
			catalog, _ := Catalog()
			if n, err := st.Seed(ctx, catalog, true); err != nil || n != 10 {
				t.Fatalf("reset Seed = %d, %v", n, err)
			}
			products, total, _ := st.List(ctx, ListFilter{Limit: 100})
			if total != 10 || products[0].ID != 1 || products[9].ID != 10 || products[0].Inventory != 50 {
				t.Fatalf("after reset: total %d, first %+v, last %+v", total, products[0], products[9])
			}
			// The old reservation is gone: the same order can reserve again.
			if res, err := st.Reserve(ctx, 1, "o-1", "5", 3); err != nil || res.Replayed {
				t.Fatalf("reserve after reset = %+v, %v", res, err)
			}
		})

		t.Run("filters and pagination", func(t *testing.T) {
			st := seeded(t, newURL(t))
			for _, tc := range []struct {
				f     ListFilter
				total int
				ids   []int64
			}{
				{ListFilter{Category: "Furniture", Limit: 20}, 3, []int64{4, 5, 10}},
				{ListFilter{Category: "furniture", Limit: 20}, 3, []int64{4, 5, 10}},
				{ListFilter{Category: "Furn", Limit: 20}, 0, nil},
				{ListFilter{Search: "cámara", Limit: 20}, 1, []int64{2}},
				{ListFilter{Search: "CÁMARA", Limit: 20}, 1, []int64{2}},
				{ListFilter{Search: "camara", Limit: 20}, 1, []int64{2}},
				{ListFilter{Search: "MECÁNICO", Limit: 20}, 1, []int64{7}},
				{ListFilter{Search: "ergonómic", Limit: 20}, 3, []int64{4, 5, 8}},
				{ListFilter{Search: "inalámbric", Limit: 20}, 2, []int64{3, 8}},
				{ListFilter{Search: "gaming", Limit: 20}, 2, []int64{1, 5}},
				{ListFilter{Search: "gaming", Category: "Furniture", Limit: 20}, 1, []int64{5}},
				{ListFilter{Search: "%", Limit: 20}, 0, nil},
				{ListFilter{Search: "_", Limit: 20}, 0, nil},
				{ListFilter{Limit: 3, Offset: 3}, 10, []int64{4, 5, 6}},
				{ListFilter{Limit: 3, Offset: 9}, 10, []int64{10}},
				{ListFilter{Limit: 3, Offset: 30}, 10, nil},
			} {
				products, total, err := st.List(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				var ids []int64
				for _, p := range products {
					ids = append(ids, p.ID)
				}
				if total != tc.total || fmt.Sprint(ids) != fmt.Sprint(tc.ids) {
					t.Errorf("%+v: total %d ids %v; want %d %v", tc.f, total, ids, tc.total, tc.ids)
				}
			}
		})

		t.Run("create, get, update, set inventory", func(t *testing.T) {
			st := openStore(t, newURL(t))
			p, err := st.Create(ctx, ProductInput{Name: "Lámpara", Description: "Luz cálida", Price: 1999, Category: "Hogar", Inventory: ptr[int64](4)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.Get(ctx, p.ID)
			if err != nil || got != p {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, p)
			}
			up, err := st.Update(ctx, p.ID, ProductInput{Name: "Lámpara LED", Price: 2499, Category: "Hogar"})
			if err != nil || up.Name != "Lámpara LED" || up.Price != 2499 || up.Inventory != 4 || up.Description != "" || !up.CreatedAt.Equal(p.CreatedAt) {
				t.Fatalf("Update without inventory = %+v, %v", up, err)
			}
			if hits, _, _ := st.List(ctx, ListFilter{Search: "led", Limit: 10}); len(hits) != 1 {
				t.Fatal("search does not see the updated name")
			}
			if inv, err := st.SetInventory(ctx, p.ID, 0); err != nil || inv.Inventory != 0 {
				t.Fatalf("SetInventory = %+v, %v", inv, err)
			}
			for _, err := range []error{
				func() error { _, err := st.Get(ctx, 999); return err }(),
				func() error { _, err := st.Update(ctx, 999, ProductInput{Name: "x", Category: "y"}); return err }(),
				func() error { _, err := st.SetInventory(ctx, 999, 1); return err }(),
			} {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("missing product: %v; want ErrNotFound", err)
				}
			}
		})

		t.Run("reserve and release are idempotent per order and product", func(t *testing.T) {
			st := seeded(t, newURL(t)) // product 10 has 15 in stock
			res, err := st.Reserve(ctx, 10, "order-1", "7", 5)
			if err != nil || res.Replayed || res.Inventory != 10 || res.Status != StatusReserved {
				t.Fatalf("Reserve = %+v, %v", res, err)
			}
			if res, err := st.Reserve(ctx, 10, "order-1", "7", 5); err != nil || !res.Replayed || res.Inventory != 10 {
				t.Fatalf("repeated Reserve = %+v, %v; want a replay taking nothing", res, err)
			}
			if _, err := st.Reserve(ctx, 10, "order-1", "7", 6); !errors.Is(err, ErrReservationConflict) {
				t.Fatalf("same order, other quantity: %v", err)
			}
			if _, err := st.Reserve(ctx, 10, "order-1", "8", 5); !errors.Is(err, ErrReservationConflict) {
				t.Fatalf("same order, other user: %v", err)
			}
			// The same order may reserve another product.
			if _, err := st.Reserve(ctx, 9, "order-1", "7", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Release(ctx, 10, "order-1", "8", false, nil); !errors.Is(err, ErrNoReservation) {
				t.Fatalf("release by another user: %v", err)
			}
			if _, err := st.Release(ctx, 10, "order-1", "7", false, ptr[int64](4)); !errors.Is(err, ErrReservationConflict) {
				t.Fatalf("release of another quantity: %v", err)
			}
			rel, err := st.Release(ctx, 10, "order-1", "7", false, ptr[int64](5))
			if err != nil || rel.Replayed || rel.Inventory != 15 || rel.Quantity != 5 || rel.Status != StatusReleased {
				t.Fatalf("Release = %+v, %v", rel, err)
			}
			if rel, err := st.Release(ctx, 10, "order-1", "7", false, nil); err != nil || !rel.Replayed || rel.Inventory != 15 {
				t.Fatalf("repeated Release = %+v, %v; want a replay returning nothing", rel, err)
			}
			if _, err := st.Reserve(ctx, 10, "order-1", "7", 5); !errors.Is(err, ErrReservationConflict) {
				t.Fatalf("reserve after release: %v; want a conflict (a late retry must not reserve again)", err)
			}
			if rel, err := st.Release(ctx, 9, "order-1", "99", true, nil); err != nil || rel.Inventory != 60 {
				t.Fatalf("admin release of another user's reservation = %+v, %v", rel, err)
			}
			if _, err := st.Release(ctx, 10, "order-2", "7", false, nil); !errors.Is(err, ErrNoReservation) {
				t.Fatalf("release without reservation: %v", err)
			}
			if _, err := st.Reserve(ctx, 999, "order-3", "7", 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("reserve of a missing product: %v", err)
			}
		})

		t.Run("insufficient stock changes nothing", func(t *testing.T) {
			st := seeded(t, newURL(t))
			if _, err := st.Reserve(ctx, 10, "big", "7", 16); !errors.Is(err, ErrInsufficientStock) {
				t.Fatalf("Reserve 16 of 15: %v", err)
			}
			if p, _ := st.Get(ctx, 10); p.Inventory != 15 {
				t.Fatalf("inventory = %d; want 15", p.Inventory)
			}
			// Nothing was recorded for the order: a smaller reservation under its id works.
			if res, err := st.Reserve(ctx, 10, "big", "7", 15); err != nil || res.Replayed || res.Inventory != 0 {
				t.Fatalf("Reserve 15 = %+v, %v", res, err)
			}
		})

		t.Run("50 concurrent reservations on 10 in stock", func(t *testing.T) {
			url := newURL(t)
			st := seeded(t, url)
			if _, err := st.SetInventory(ctx, 1, 10); err != nil {
				t.Fatal(err)
			}
			// Two handles: two instances of the service on one database.
			stores := []*Store{st, openStore(t, url)}
			var ok, short atomic.Int32
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Go(func() {
					_, err := stores[i%2].Reserve(ctx, 1, fmt.Sprintf("order-%d", i), "7", 1)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrInsufficientStock):
						short.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			p, _ := st.Get(ctx, 1)
			if ok.Load() != 10 || short.Load() != 40 || p.Inventory != 0 {
				t.Fatalf("succeeded %d, insufficient %d, inventory %d; want 10, 40, 0", ok.Load(), short.Load(), p.Inventory)
			}
		})

		t.Run("concurrent identical reserves and releases count once", func(t *testing.T) {
			url := newURL(t)
			st := seeded(t, url)
			stores := []*Store{st, openStore(t, url)}
			var fresh, replays atomic.Int32
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					res, err := stores[i%2].Reserve(ctx, 2, "same-order", "7", 3)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Replayed {
						replays.Add(1)
					} else {
						fresh.Add(1)
					}
				})
			}
			wg.Wait()
			if p, _ := st.Get(ctx, 2); fresh.Load() != 1 || replays.Load() != 19 || p.Inventory != 97 {
				t.Fatalf("fresh %d, replays %d, inventory %d; want 1, 19, 97", fresh.Load(), replays.Load(), p.Inventory)
			}
			fresh.Store(0)
			for i := range 20 {
				wg.Go(func() {
					res, err := stores[i%2].Release(ctx, 2, "same-order", "7", false, nil)
					if err != nil {
						t.Error(err)
						return
					}
					if !res.Replayed {
						fresh.Add(1)
					}
				})
			}
			wg.Wait()
			if p, _ := st.Get(ctx, 2); fresh.Load() != 1 || p.Inventory != 100 {
				t.Fatalf("releases that returned stock %d, inventory %d; want 1, 100", fresh.Load(), p.Inventory)
			}
		})

		t.Run("inventory cannot go negative even by a direct update", func(t *testing.T) {
			st := seeded(t, newURL(t))
			if _, err := st.db.Exec(ctx, "UPDATE products SET inventory = -1 WHERE id = 1"); err == nil {
				t.Fatal("the database accepted a negative inventory")
			}
		})
	})
}

func TestFold(t *testing.T) {
	for in, want := range map[string]string{"Mecánico": "mecanico", "CÁMARA": "camara", "Ñandú": "nandu", "Plain": "plain"} {
		if got := fold(in); got != want {
			t.Errorf("fold(%q) = %q; want %q", in, got, want)
		}
	}
	_ = money.Cents(0)
}
