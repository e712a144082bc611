package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type checkOut struct {
	Status   string `json:"status"`
	Nodes    []string
	Checks   []struct{ Check, Severity string }
	Findings []struct{ Check, Node, Severity, Problem, Try, Table string }
}

func runCheck(t *testing.T, cfg string) (checkOut, int, string) {
	t.Helper()
	out, errOut, code := cli(t, "", "-c", cfg, "check", "--json")
	var c checkOut
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("check --json: code %d, %v\n%s\n%s", code, err, out, errOut)
	}
	return c, code, errOut
}

func TestCheckCommand(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE TABLE loose (a int)`)

	// Healthy pair: a table without a key only warns.
	c, code, errOut := runCheck(t, cfg)
	if code != exitOK || c.Status != "warn" {
		t.Fatalf("healthy pair: code %d status %s, want 0 warn\n%+v\n%s", code, c.Status, c, errOut)
	}
	if strings.Join(c.Nodes, ",") != "origin,replica r1" {
		t.Fatalf("nodes %v", c.Nodes)
	}
	if len(c.Findings) != 1 || c.Findings[0].Check != "no primary key" || c.Findings[0].Severity != "warn" || c.Findings[0].Table != "public.loose" {
		t.Fatalf("findings on a healthy pair: %+v", c.Findings)
	}

	// A captured table dropped on the replica blocks, naming table and replica.
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	execSQL(t, replica, "DROP TABLE orders")
	c, code, _ = runCheck(t, cfg)
	if code != exitProblems || c.Status != "fail" {
		t.Fatalf("captured table missing: code %d status %s, want 3 fail\n%+v", code, c.Status, c)
	}
	var found bool
	for _, f := range c.Findings {
		if f.Check == "tables on replica" && f.Severity == "fail" && f.Node == "replica r1" && f.Table == "public.orders" &&
			f.Problem == "replica r1 lacks captured table public.orders: its changes cannot be applied there" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no finding names public.orders on replica r1: %+v", c.Findings)
	}
	// The human form says the same, and the exit code is 3.
	out, errOut, code := cli(t, "", "-c", cfg, "check")
	t.Logf("check:\n%s%s", out, errOut)
	if code != exitProblems || !strings.Contains(out, "FAIL replica r1 lacks captured table public.orders") ||
		!strings.Contains(errOut, "check found 1 blocking problem") {
		t.Fatalf("check: code %d\n%s\n%s", code, out, errOut)
	}
	_ = origin
}

func TestCheckReplicaStopped(t *testing.T) {
	cfg, _, _ := dbs(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	p := shared.Get(t)
	ctx := context.Background()
	if err := p.Replica.StopServer(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Replica.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	start := time.Now()
	c, code, _ := runCheck(t, cfg)
	if code != exitProblems || c.Status != "fail" {
		t.Fatalf("replica stopped: code %d status %s, want 3 fail\n%+v", code, c.Status, c)
	}
	if len(c.Findings) == 0 || c.Findings[0].Check != "reachable" || c.Findings[0].Node != "replica r1" ||
		!strings.HasPrefix(c.Findings[0].Problem, "connect to replica r1 (") {
		t.Fatalf("first finding should name the stopped replica: %+v", c.Findings)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("check took %s against a stopped replica", took)
	}
}

func TestConflictsCommand(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE items (id int PRIMARY KEY, name text)`)
	execSQL(t, origin, "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
	execSQL(t, replica, "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	out, _, code := cli(t, "", "-c", cfg, "conflicts", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("no conflicts yet: code %d %q", code, out)
	}
	// The replica loses row 1; the origin then updates it: a conflict.
	execSQL(t, replica, "DELETE FROM items WHERE id = 1")
	execSQL(t, origin, "UPDATE items SET name = 'uno' WHERE id = 1; UPDATE items SET name = 'dos' WHERE id = 2")
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate: %d %s", code, errOut)
	}
	out, errOut, code := cli(t, "", "-c", cfg, "conflicts", "--json", "--replica", "r1")
	var cs []struct {
		Replica, Table, Op, Kind string
		Key                      map[string]string
		Captured                 map[string]string
		ReplicaRow               map[string]string `json:"replica_row"`
	}
	if err := json.Unmarshal([]byte(out), &cs); err != nil || code != 0 {
		t.Fatalf("conflicts --json: code %d %v\n%s\n%s", code, err, out, errOut)
	}
	if len(cs) != 1 {
		t.Fatalf("want 1 conflict, got %+v", cs)
	}
	c := cs[0]
	if c.Replica != "r1" || c.Table != "public.items" || c.Op != "U" || c.Kind != "update: no row" || c.Key["id"] != "1" ||
		c.Captured["name"] != "uno" || c.ReplicaRow != nil {
		t.Fatalf("conflict: %+v", c)
	}
	// Once the row is back on the replica, its current row is shown.
	execSQL(t, replica, "INSERT INTO items VALUES (1, 'restored')")
	out, _, code = cli(t, "", "-c", cfg, "conflicts")
	if code != 0 || !strings.Contains(out, "public.items") || !strings.Contains(out, "id=1 name=restored") {
		t.Fatalf("conflicts: code %d\n%s", code, out)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "conflicts", "--replica", "nope"); code != exitUsage {
		t.Fatalf("unknown replica: code %d %s", code, errOut)
	}
}

func TestBackupAndSmokeCommands(t *testing.T) {
	cfg, _, _ := dbs(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	dir := t.TempDir()
	out, errOut, code := cli(t, "", "-c", cfg, "backup", "--to", dir)
	if code != 0 || !strings.HasPrefix(out, "backup written: "+dir+"/") {
		t.Fatalf("backup: code %d\n%s\n%s", code, out, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.dump"))
	if len(files) != 1 {
		t.Fatalf("dump files %v", files)
	}
	st, err := os.Stat(files[0])
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
		t.Fatalf("dump %s: %v mode %v size %d, want 0600 and data", files[0], err, st.Mode().Perm(), st.Size())
	}
	out, errOut, code = cli(t, "", "-c", cfg, "smoke", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "INSERT seen on r1 after") || !strings.Contains(out, "DELETE seen on r1 after") ||
		!strings.HasSuffix(out, "smoke test passed\n") {
		t.Fatalf("smoke: code %d\n%s\n%s", code, out, errOut)
	}
}

func TestCheckMissingPrivilegeBlocks(t *testing.T) {
	_, origin, replica := dbs(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	role := "pgreplica_nopriv"
	for _, d := range []string{origin, replica} {
		execSQL(t, d, `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgreplica_nopriv') THEN CREATE ROLE pgreplica_nopriv LOGIN; END IF; END $$`)
	}
	as := func(dsn string) string { return strings.Replace(dsn, "user=postgres", "user="+role, 1) }
	if !strings.Contains(origin, "user=postgres") {
		t.Fatalf("unexpected DSN form %q", origin)
	}
	cfg := writeConfig(t, "name: shop\norigin:\n  dsn: \""+as(origin)+"\"\nreplicas:\n  - name: r1\n    dsn: \""+as(replica)+"\"\n")
	c, code, _ := runCheck(t, cfg)
	if code != exitProblems || c.Status != "fail" {
		t.Fatalf("without privileges: code %d status %s, want 3 fail\n%+v", code, c.Status, c)
	}
	var got []string
	for _, f := range c.Findings {
		if f.Severity == "fail" {
			got = append(got, f.Check+"@"+f.Node)
		}
	}
	if strings.Join(got, " ") != "CREATE on db@origin CREATE on db@replica r1 TRIGGER on@origin" {
		t.Fatalf("blocking findings %v: %+v", got, c.Findings)
	}
}
