package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The schema-change commands as a script uses them: execute (a file, then
// --sql), a failing script on the replica, skip, reapply, and status and
// check saying a capture is stale.
func TestCLIExecuteSkipReapplyAndStale(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE orders (id int PRIMARY KEY, note text)`)
	if out, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d\n%s\n%s", code, out, errOut)
	}
	script := filepath.Join(t.TempDir(), "042.sql")
	if err := os.WriteFile(script, []byte("ALTER TABLE orders ADD COLUMN total numeric(10,2) DEFAULT 0;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "execute", script); code != exitUsage || !strings.Contains(errOut, "refusing without --yes") {
		t.Fatalf("execute without --yes: %d %q", code, errOut)
	}
	out, _, code := cli(t, "", "-c", cfg, "execute", "--yes", script)
	if code != 0 || !strings.HasPrefix(out, "executed on the origin; every replica runs it as event ") {
		t.Fatalf("execute: %d %q", code, out)
	}
	execSQL(t, origin, `INSERT INTO orders VALUES (1, 'a', 9.99)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %d %s", code, errOut)
	}
	if got := queryText(t, replica, `SELECT total::text FROM orders WHERE id = 1`); got != "9.99" {
		t.Fatalf("replica's total %q", got)
	}

	// A script that fails on the replica: stop, skip, reapply.
	execSQL(t, replica, `CREATE INDEX orders_note ON orders (note)`)
	out, _, code = cli(t, "", "-c", cfg, "execute", "--yes", "--sql", "CREATE INDEX orders_note ON orders (note)")
	if code != 0 {
		t.Fatalf("execute --sql: %d %q", code, out)
	}
	var id int64
	if _, err := fmt.Sscanf(strings.TrimPrefix(out, "executed on the origin; every replica runs it as event "), "%d", &id); err != nil {
		t.Fatalf("event id in %q: %v", out, err)
	}
	_, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once")
	if code != exitErr || !strings.Contains(errOut, fmt.Sprintf(`the script of event %d (pgreplica execute) failed: relation "orders_note" already exists`, id)) {
		t.Fatalf("replicate with a failing script: %d %q", code, errOut)
	}
	out, errOut, code = cli(t, "", "-c", cfg, "skip", "--replica", "r1", "--event", fmt.Sprint(id), "--reason", "made by hand", "--yes")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replica r1: skipped event %d", id)) {
		t.Fatalf("skip: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate after skip: %d %s", code, errOut)
	}
	execSQL(t, replica, `DROP INDEX orders_note`)
	if out, errOut, code := cli(t, "", "-c", cfg, "reapply", "--replica", "r1", "--event", fmt.Sprint(id)); code != 0 || !strings.Contains(out, "applied event") {
		t.Fatalf("reapply: %d %q %q", code, out, errOut)
	}
	if got := queryText(t, replica, `SELECT count(*)::text FROM pg_indexes WHERE indexname = 'orders_note'`); got != "1" {
		t.Fatal("reapply did not make the index")
	}

	// A plain ALTER TABLE without the event trigger: stale in status and check.
	execSQL(t, origin, `DROP EVENT TRIGGER pgreplica_ddl; ALTER TABLE orders ADD COLUMN note2 text`)
	out, _, _ = cli(t, "", "-c", cfg, "status")
	if !strings.Contains(out, "capture is stale for public.orders: run pgreplica install (a column added since is not replicated)") {
		t.Fatalf("status does not say stale:\n%s", out)
	}
	out, _, _ = cli(t, "", "-c", cfg, "status", "--json")
	var st struct {
		Stale []string `json:"stale_capture"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Stale) != 1 || st.Stale[0] != "public.orders" {
		t.Fatalf("status --json stale_capture: %v %q", err, out)
	}
	out, _, code = cli(t, "", "-c", cfg, "check")
	if code != exitProblems || !strings.Contains(out, "capture is stale for public.orders") {
		t.Fatalf("check with stale capture: %d\n%s", code, out)
	}
}

// tables shows the captured tables' sequences on the origin and each replica.
func TestCLITablesShowsSequences(t *testing.T) {
	cfg, origin, _ := dbs(t, `CREATE TABLE orders (id serial PRIMARY KEY, note text)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	execSQL(t, origin, `INSERT INTO orders (note) SELECT 'x' FROM generate_series(1, 5)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %s", errOut)
	}
	out, _, code := cli(t, "", "-c", cfg, "tables")
	if code != 0 {
		t.Fatalf("tables: %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.Fields(lines[len(lines)-1])
	if strings.Join(last, " ") != "public.orders_id_seq public.orders 5 5" || !strings.Contains(out, "SEQUENCE") {
		t.Fatalf("tables:\n%s", out)
	}
	out, _, _ = cli(t, "", "-c", cfg, "tables", "--json")
	var tabs []struct {
		Sequences []struct {
			Name     string            `json:"name"`
			Origin   *int64            `json:"origin"`
			Replicas map[string]*int64 `json:"replicas"`
		} `json:"sequences"`
	}
	if err := json.Unmarshal([]byte(out), &tabs); err != nil || len(tabs) != 1 || len(tabs[0].Sequences) != 1 ||
		*tabs[0].Sequences[0].Origin != 5 || *tabs[0].Sequences[0].Replicas["r1"] != 5 {
		t.Fatalf("tables --json: %v %s", err, out)
	}
}

// A duplicate key stops the replica: why names the event and key, skip
// moves past it (recorded in pgreplica.skipped) and the rest applies; once
// the operator removed the replica's own row, reapply brings the replica
// equal, as verify says.
func TestCLIDuplicateKeyWhySkipReapply(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE orders (id int PRIMARY KEY, note text)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	execSQL(t, replica, `INSERT INTO orders VALUES (7, 'made on the replica')`)
	execSQL(t, origin, `INSERT INTO orders VALUES (7, 'from the origin')`)
	execSQL(t, origin, `INSERT INTO orders VALUES (8, 'after it')`)
	if _, _, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != exitErr {
		t.Fatalf("replicate over a duplicate key exited %d", code)
	}
	out, _, _ := cli(t, "", "-c", cfg, "why", "--replica", "r1", "--json")
	var why struct {
		Replicas []struct {
			Failing *struct {
				ID  int64           `json:"id"`
				Key json.RawMessage `json:"key"`
			} `json:"failing_event"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(out), &why); err != nil || len(why.Replicas) != 1 || why.Replicas[0].Failing == nil || strings.Join(strings.Fields(string(why.Replicas[0].Failing.Key)), "") != `{"id":7}` {
		t.Fatalf("why --json: %v\n%s", err, out)
	}
	id := why.Replicas[0].Failing.ID
	if _, errOut, code := cli(t, "", "-c", cfg, "skip", "--replica", "r1", "--event", fmt.Sprint(id), "--reason", "replica row kept", "--yes"); code != 0 {
		t.Fatalf("skip: %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate after skip: %d %s", code, errOut)
	}
	if got := queryText(t, replica, `SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM orders`); got != "7:made on the replica,8:after it" {
		t.Fatalf("replica after skip: %q", got)
	}
	if got := queryText(t, replica, `SELECT op::text || ' ' || reason FROM pgreplica.skipped WHERE event_id = `+fmt.Sprint(id)); got != "I replica row kept" {
		t.Fatalf("pgreplica.skipped: %q", got)
	}
	execSQL(t, replica, `DELETE FROM orders WHERE id = 7`)
	if out, errOut, code := cli(t, "", "-c", cfg, "reapply", "--replica", "r1", "--event", fmt.Sprint(id)); code != 0 {
		t.Fatalf("reapply: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify after reapply: %d\n%s\n%s", code, out, errOut)
	}
}

// A table the replica cannot apply is held: replicate goes on with the
// rest, status says critical and names it, retry --table releases it once
// fixed.
func TestCLIHeldTable(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE orders (id int PRIMARY KEY, note text, extra text); CREATE TABLE other (id int PRIMARY KEY)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	execSQL(t, replica, `ALTER TABLE orders DROP COLUMN extra`)
	execSQL(t, origin, `INSERT INTO orders VALUES (1, 'a', 'x'); INSERT INTO other VALUES (1)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate with a held table: %d %s", code, errOut)
	}
	if got := queryText(t, replica, `SELECT count(*)::text FROM other`); got != "1" {
		t.Fatal("the other table did not flow")
	}
	out, _, code := cli(t, "", "-c", cfg, "status")
	if code != statusCritical || !strings.Contains(out, "replica r1 holds table public.orders: its events do not fit the table there (fix it, then pgreplica retry --table public.orders)") {
		t.Fatalf("status with a held table: %d\n%s", code, out)
	}
	execSQL(t, replica, `ALTER TABLE orders ADD COLUMN extra text`)
	if out, errOut, code := cli(t, "", "-c", cfg, "retry", "--table", "public.orders"); code != 0 || !strings.Contains(out, "replica r1: released public.orders") {
		t.Fatalf("retry --table: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate after the fix: %d %s", code, errOut)
	}
	if got := queryText(t, replica, `SELECT extra FROM orders WHERE id = 1`); got != "x" {
		t.Fatalf("the held row did not arrive: %q", got)
	}
}

// protect: install fences the replica's tables and tables says so.
func TestCLIProtectFencesAndTablesSaysSo(t *testing.T) {
	p := shared.Get(t)
	originDSN, replicaDSN := p.DBs(t)
	for _, d := range []string{originDSN, replicaDSN} {
		execSQL(t, d, `CREATE TABLE orders (id int PRIMARY KEY)`)
	}
	cfg := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\n    protect: true\n", originDSN, replicaDSN))
	out, errOut, code := cli(t, "", "-c", cfg, "install")
	if code != 0 || !strings.Contains(out, "replica r1: fenced public.orders: writes by anyone but pgreplica are refused") {
		t.Fatalf("install: %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = cli(t, "", "-c", cfg, "tables")
	if !strings.Contains(out, "replica r1 is fenced (protect): writes by anyone but pgreplica are refused on 1 table") {
		t.Fatalf("tables:\n%s", out)
	}
	out, _, _ = cli(t, "", "-c", cfg, "tables", "--json")
	if !strings.Contains(out, `"fenced_on": [`) || !strings.Contains(out, `"r1"`) {
		t.Fatalf("tables --json:\n%s", out)
	}
	bad := writeConfig(t, "name: shop\norigin:\n  dsn: \"host=x\"\nreplicas:\n  - name: dmz\n    file: true\n    protect: true\n")
	if _, errOut, code := cli(t, "", "-c", bad, "tables"); code == 0 || !strings.Contains(errOut, "replicas[0].protect: a file replica is fenced by nobody") {
		t.Fatalf("protect on a file replica: %d %q", code, errOut)
	}
}
