package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// emptyReplica creates an origin database with schema and an empty replica
// database, and a config file naming them (set shop, replica r1).
func emptyReplica(t *testing.T, schema string) (cfgPath, originDSN, replicaDSN string) {
	t.Helper()
	p := shared.Get(t)
	originDSN, replicaDSN = p.DBs(t)
	execSQL(t, originDSN, schema)
	cfgPath = writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\n", originDSN, replicaDSN))
	return cfgPath, originDSN, replicaDSN
}

func TestCLISyncSchemaToFreshReplica(t *testing.T) {
	cfg, origin, replica := emptyReplica(t, `
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE orders (id bigserial PRIMARY KEY, st status NOT NULL DEFAULT 'new', total numeric(10, 2), at timestamptz);
CREATE TABLE "Line Items" (order_id bigint, n int, sku text, PRIMARY KEY (order_id, n));
CREATE TABLE notes (body text);
INSERT INTO orders (total, at) SELECT g * 1.5, '2026-01-01 00:00+00' FROM generate_series(1, 2000) g;
INSERT INTO "Line Items" SELECT g, 1, 'sku-' || g FROM generate_series(1, 2000) g;`)
	out, errOut, code := cli(t, "", "-c", cfg, "sync", "--schema")
	if code != 0 {
		t.Fatalf("sync --schema: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"public.notes has no primary key: not replicated, not copied\n",
		"replica r1: created type public.status\n",
		"replica r1: created table public.orders (4 columns, primary key)\n",
		`replica r1: created table public."Line Items" (3 columns, primary key)` + "\n",
		"origin: installed capture schema (version 3)\n",
		"created trigger on public.orders (id)\n",
		"copied 2 tables (4000 rows, ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sync stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"r1 public.orders: copying (", "r1 public.orders: copied 2000 rows ("} {
		if !strings.Contains(errOut, want) {
			t.Errorf("sync stderr lacks %q:\n%s", want, errOut)
		}
	}
	execSQL(t, origin, `UPDATE orders SET st = 'paid' WHERE id <= 10; INSERT INTO "Line Items" VALUES (1, 2, 'more')`)
	if out, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s%s", code, out, errOut)
	}
	if queryText(t, replica, "SELECT last_value::text FROM orders_id_seq") != "2000" {
		t.Error("the replica's sequence was not set to the origin's")
	}

	// Again, now that the replica has rows: it asks, and refuses without --yes.
	_, errOut, code = cli(t, "", "-c", cfg, "sync")
	want := "Error: Replace the rows of public.\"Line Items\", public.orders on replica r1 with the origin's: refusing without --yes (standard input is not a terminal)\n"
	if code != 2 || !strings.HasPrefix(errOut, want) {
		t.Fatalf("sync over rows without --yes: code %d\n%s", code, errOut)
	}
	// A table that drifted is copied again, online, with --table.
	execSQL(t, replica, "DELETE FROM orders WHERE id > 1500")
	if out, errOut, code := cli(t, "", "-c", cfg, "sync", "--table", "orders", "--replica", "r1", "--yes"); code != 0 ||
		!strings.Contains(out, "copied 1 table (2000 rows, ") {
		t.Fatalf("sync --table: %d\n%s%s", code, out, errOut)
	}
	cli(t, "", "-c", cfg, "replicate", "--once")
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify after re-copy: %d\n%s%s", code, out, errOut)
	}

	// Bad input: one clear line, nothing changed.
	_, errOut, code = cli(t, "", "-c", cfg, "sync", "--table", "notes", "--yes")
	if code != 1 || errOut != "Error: public.notes has no primary key on the origin: it cannot be replicated\n" {
		t.Fatalf("sync of a table without key: code %d, %q", code, errOut)
	}
	_, errOut, code = cli(t, "", "-c", cfg, "sync", "--replica", "r1", "--replica", "r2")
	if code != 2 || !strings.HasPrefix(errOut, "Error: --replica names one replica (got r1, r2)\n") {
		t.Fatalf("two --replica names: code %d, %q", code, errOut)
	}
}

// loadTables writes to tables (id bigint key, payload text) on the origin
// from two goroutines until stopped.
func loadTables(t *testing.T, dsn string, tables []string, rows int) (stop func() int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var n atomic.Int64
	var failed atomic.Value
	for i := range 2 {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close(context.Background())
			for k := 0; ctx.Err() == nil && k < 20000; k++ {
				time.Sleep(time.Millisecond) // a steady load through both runs, not a flood
				tb := tables[k%len(tables)]
				id := (k*7919+i*15485863)%rows + 1
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				b.Queue("UPDATE "+tb+" SET payload = payload || 'u' WHERE id = $1", id)
				b.Queue("DELETE FROM "+tb+" WHERE id = $1", id+1)
				b.Queue("INSERT INTO "+tb+" VALUES ($1, 'new') ON CONFLICT (id) DO UPDATE SET payload = 'again'", rows+id)
				b.Queue("COMMIT")
				if err := c.SendBatch(ctx, b).Close(); err != nil {
					if ctx.Err() == nil && !strings.Contains(err.Error(), "40P01") {
						failed.Store(err)
						return
					}
					_, _ = c.Exec(context.Background(), "ROLLBACK")
					continue
				}
				n.Add(1)
			}
		})
	}
	return func() int64 {
		cancel()
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatalf("load: %v", err)
		}
		return n.Load()
	}
}

// A sync killed with SIGKILL midway leaves the tables it had not finished
// marked as being copied (the engine holds their changes); running it again
// copies them anew, and everything ends equal.
func TestCLISyncKilledMidwayAndRerun(t *testing.T) {
	const rows = 150000
	cfg, origin, replica := emptyReplica(t, fmt.Sprintf(`
CREATE TABLE big_a (id bigint PRIMARY KEY, payload text);
CREATE TABLE big_b (id bigint PRIMARY KEY, payload text);
INSERT INTO big_a SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, %[1]d) g;
INSERT INTO big_b SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, %[1]d) g;
ANALYZE big_a, big_b;`, rows))
	stopLoad := loadTables(t, origin, []string{"big_a", "big_b"}, rows)
	defer stopLoad()

	cmd := exec.Command(binary(t), "-c", cfg, "sync", "--schema", "--workers", "1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	killed := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), ": copied ") {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	err = cmd.Wait()
	if !killed {
		t.Fatalf("sync ended (%v) before a table was copied:\n%s", err, strings.Join(seen, "\n"))
	}
	t.Logf("killed after:\n%s", strings.Join(seen, "\n"))
	states := queryText(t, replica, "SELECT string_agg(table_name || ' ' || state, ', ' ORDER BY table_name) FROM pgreplica.table_state")
	if states != "big_a catchup, big_b copying" && states != "big_a copying, big_b catchup" {
		t.Fatalf("after the kill the tables are: %s", states)
	}
	// The engine runs meanwhile: it applies the copied table and holds the other's changes.
	time.Sleep(200 * time.Millisecond)
	if out, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %d\n%s%s", code, out, errOut)
	}
	if n := queryText(t, replica, "SELECT count(*)::text FROM pgreplica.held"); n == "0" {
		t.Fatal("no change of the unfinished table was held")
	}

	out, errOut, code := cli(t, "", "-c", cfg, "sync", "--workers", "1", "--yes")
	if code != 0 {
		t.Fatalf("sync again: %d\n%s%s", code, out, errOut)
	}
	time.Sleep(200 * time.Millisecond)
	txns := stopLoad()
	t.Logf("%d load transactions", txns)
	if out, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s%s", code, out, errOut)
	}
	for _, tb := range []string{"big_a", "big_b"} {
		if sortedRows(t, origin, tb) != sortedRows(t, replica, tb) {
			t.Fatalf("%s differs row by row", tb)
		}
	}
	if s := queryText(t, replica, "SELECT string_agg(DISTINCT state, ',') FROM pgreplica.table_state"); s != "replicating" {
		t.Fatalf("table states after catching up: %s", s)
	}
	if n := queryText(t, replica, "SELECT count(*)::text FROM pgreplica.held"); n != "0" {
		t.Fatalf("%s held events left", n)
	}
}

func TestCLIAddTableSync(t *testing.T) {
	_, origin, replica := dbs(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);`)
	execSQL(t, origin, "INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 500) g")
	execSQL(t, replica, "INSERT INTO b VALUES (1, 'stale')")
	// Only a is replicated at first.
	cfg := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\ntables:\n  include: [public.a]\n", origin, replica))
	if out, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d\n%s%s", code, out, errOut)
	}
	execSQL(t, origin, "INSERT INTO a VALUES (1, 'a')")
	if _, errOut, code := cli(t, "", "-c", cfg, "add-table", "b", "--sync"); code != 2 ||
		!strings.HasPrefix(errOut, "Error: Replace the rows of public.b on replica r1 with the origin's: refusing without --yes") {
		t.Fatalf("add-table --sync over rows: %d\n%s", code, errOut)
	}
	out, errOut, code := cli(t, "", "-c", cfg, "add-table", "b", "--sync", "--yes")
	if code != 0 || !strings.Contains(out, "created trigger on public.b (id)\n") || !strings.Contains(out, "copied 1 table (500 rows, ") {
		t.Fatalf("add-table --sync: %d\n%s%s", code, out, errOut)
	}
	if s := queryText(t, replica, "SELECT state FROM pgreplica.table_state WHERE table_name = 'b'"); s != "catchup" {
		t.Fatalf("b is %s after the copy", s)
	}
	execSQL(t, origin, "UPDATE b SET v = 'changed' WHERE id < 10")
	cli(t, "", "-c", cfg, "replicate", "--once")
	if s := queryText(t, replica, "SELECT state FROM pgreplica.table_state WHERE table_name = 'b'"); s != "replicating" {
		t.Fatalf("b is %s after the engine caught up", s)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s%s", code, out, errOut)
	}
}
