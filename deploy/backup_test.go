package deploy

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"
)

// docBlock returns the shell block of docs/operations.md that follows <!-- test: name -->.
func docBlock(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "<!-- test: "+name+" -->\n```sh\n")
	if !ok {
		t.Fatalf("docs/operations.md has no block marked <!-- test: %s -->", name)
	}
	body, _, _ := strings.Cut(after, "```")
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if l := sc.Text(); strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// dockerShim stands in for `docker compose exec -T <service> CMD...` on this machine: it runs
// CMD. Any other docker command in a block reaching it is a mistake of the test.
const dockerShim = `docker() {
  if [ "$1 $2 $3" = "compose exec -T" ]; then shift 4; "$@"; return; fi
  echo "docker $*: not handled by the test" >&2; return 2
}
`

// runDocBlock runs a block's lines in dir: `docker compose stop|start ...` lines call onCompose,
// runs of other lines go to sh with the docker shim.
func runDocBlock(t *testing.T, lines []string, dir string, env []string, onCompose func(verb string, services []string)) {
	t.Helper()
	var script []string
	flush := func() {
		if len(script) == 0 {
			return
		}
		cmd := exec.Command("/bin/sh", "-ec", dockerShim+strings.Join(script, "\n"))
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v running\n%s\n%s", err, strings.Join(script, "\n"), out)
		}
		script = nil
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 3 && f[0] == "docker" && f[1] == "compose" && (f[2] == "stop" || f[2] == "start") {
			flush()
			onCompose(f[2], f[3:])
			continue
		}
		script = append(script, l)
	}
	flush()
}

// productInventory reads product 1's inventory from a running products service.
func productInventory(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/products/1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Inventory *int }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Inventory == nil {
		t.Fatalf("GET /products/1: %s %v", resp.Status, err)
	}
	return *p.Inventory
}

// startProducts runs the products binary of the replayed image on databaseURL.
func startProducts(t *testing.T, databaseURL string) (*testenv.Process, string) {
	t.Helper()
	img := builtImages(t)["products"]
	addr := testenv.FreeAddr(t)
	p := testenv.StartProcess(t, "products", img.root.path(img.entrypoint[0]), nil, testenv.ProcessOptions{Env: []string{
		"ADDR=" + addr, "DATABASE_URL=" + databaseURL, "JWKS_URL=http://127.0.0.1:1/jwks.json",
	}})
	waitOK(t, "http://"+addr+"/health", 30*time.Second)
	return p, addr
}

// TestBackupPostgres: deploy/postgres/init-databases.sh makes a database and a role per service
// that the service can migrate and use and that the others cannot enter; the backup and restore
// commands of docs/operations.md bring a database back to the state of the backup.
func TestBackupPostgres(t *testing.T) {
	psql := testenv.RequireBinary(t, "psql")
	testenv.RequireBinary(t, "pg_dump")
	testenv.RequireBinary(t, "pg_restore")
	pg := testenv.StartPostgres(t)
	if pg.Port == 0 {
		testenv.Missing(t, "TEST_DATABASE_URL points at a shared server; this test needs its own cluster")
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{}
	for _, svc := range []string{"users", "products", "orders", "payments"} {
		passwords[svc] = "pw" + svc + "0123456789"
		if err := os.WriteFile(filepath.Join(secrets, svc+"_db_password"), []byte(passwords[svc]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pgEnv := []string{
		"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER=postgres",
		"PATH=" + filepath.Dir(psql) + ":" + os.Getenv("PATH"),
	}
	initScript := filepath.Join(root(), "deploy", "postgres", "init-databases.sh")
	for run := 1; run <= 2; run++ { // the script is idempotent
		cmd := exec.Command("bash", initScript)
		cmd.Env = append(os.Environ(), append(pgEnv, "SECRETS_DIR="+secrets, "POSTGRES_USER=postgres", "POSTGRES_DB=postgres")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init-databases.sh (run %d): %v\n%s", run, err, out)
		}
	}
	dsn := func(svc, db string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", svc, passwords[svc], pg.Port, db)
	}
	ctx := testenv.Context(t)
	// Each role reaches its own database only.
	if conn, err := pgx.Connect(ctx, dsn("products", "users")); err == nil {
		conn.Close(ctx)
		t.Error("role products can connect to database users")
	}

	// The service migrates and seeds its database as its own role.
	products, _ := startProducts(t, dsn("products", "products"))
	setInventory := func(n int) {
		conn, err := pgx.Connect(ctx, dsn("products", "products"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "UPDATE products SET inventory = $1 WHERE id = 1", n); err != nil {
			t.Fatal(err)
		}
	}
	setInventory(7)

	runDocBlock(t, docBlock(t, "pg-backup"), dir, pgEnv, nil)
	for _, db := range []string{"users", "products", "orders", "payments"} {
		if st, err := os.Stat(filepath.Join(dir, "backup", db+".dump")); err != nil || st.Size() == 0 {
			t.Fatalf("backup/%s.dump: %v", db, err)
		}
	}

	setInventory(0) // what the restore must undo
	var restarted string
	runDocBlock(t, docBlock(t, "pg-restore"), dir, pgEnv, func(verb string, services []string) {
		switch verb {
		case "stop":
			products.Stop()
		case "start":
			_, restarted = startProducts(t, dsn("products", "products"))
		}
	})
	if restarted == "" {
		t.Fatal("the restore block never starts the products instances again")
	}
	if got := productInventory(t, restarted); got != 7 {
		t.Fatalf("after the restore product 1 has inventory %d, want the backed-up 7", got)
	}
	// The restored tables still belong to the service's role: it can write (and migrate) them.
	conn, err := pgx.Connect(ctx, dsn("products", "products"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var owner string
	if err := conn.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'products'").Scan(&owner); err != nil || owner != "products" {
		t.Fatalf("restored table products is owned by %q (%v), want products", owner, err)
	}
}

// TestBackupSQLite: the SQLite backup of docs/operations.md, taken while the service runs and has
// changes only in its WAL, restores to the state it was taken in.
func TestBackupSQLite(t *testing.T) {
	testenv.RequireBinary(t, "sqlite3")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	// The other services' files, as make run leaves them.
	for _, db := range []string{"users", "orders", "payments"} {
		execSQLite(t, filepath.Join(data, db+".db"), "PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
	}
	products, _ := startProducts(t, filepath.Join(data, "products.db"))
	execSQLite(t, filepath.Join(data, "products.db"), "PRAGMA busy_timeout=10000; UPDATE products SET inventory = 7 WHERE id = 1")
	if st, err := os.Stat(filepath.Join(data, "products.db-wal")); err != nil || st.Size() == 0 {
		t.Fatalf("the change should sit in the WAL of the running service: %v", err)
	}

	runDocBlock(t, docBlock(t, "sqlite-backup"), dir, nil, nil)

	execSQLite(t, filepath.Join(data, "products.db"), "PRAGMA busy_timeout=10000; UPDATE products SET inventory = 0 WHERE id = 1")
	// Stopped the hard way: a crashed (or killed) service leaves its WAL behind, holding the
	// change above; a restore that kept it would bring the change back over the backup.
	products.Kill()
	if _, err := os.Stat(filepath.Join(data, "products.db-wal")); err != nil {
		t.Fatalf("the killed service left no WAL: %v", err)
	}
	runDocBlock(t, docBlock(t, "sqlite-restore"), dir, nil, nil)
	_, addr := startProducts(t, filepath.Join(data, "products.db"))
	if got := productInventory(t, addr); got != 7 {
		t.Fatalf("after the restore product 1 has inventory %d, want the backed-up 7", got)
	}
	var n int
	if err := openSQLite(t, filepath.Join(dir, "backup", "orders.db")).QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("backup/orders.db: %d rows, %v", n, err)
	}
}

func openSQLite(t *testing.T, file string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func execSQLite(t *testing.T, file, stmts string) {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection: the PRAGMAs apply to the statements after them
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range strings.Split(stmts, ";") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %s: %v", file, s, err)
		}
	}
}
