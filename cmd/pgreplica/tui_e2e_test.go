package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/demo"
	"pgreplica/core/pg"
)

// tmux drives the real binary in a real terminal.
type tmux struct {
	t    *testing.T
	name string
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", args...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (x *tmux) screen() string { return x.run("capture-pane", "-p", "-t", x.name) }

func (x *tmux) keys(keys ...string) {
	x.t.Helper()
	for _, k := range keys {
		x.run("send-keys", "-t", x.name, k)
		time.Sleep(150 * time.Millisecond)
	}
}

// waitFor waits until the screen shows every text.
func (x *tmux) waitFor(timeout time.Duration, texts ...string) string {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	var s string
	for time.Now().Before(deadline) {
		s = x.screen()
		ok := true
		for _, t := range texts {
			if !strings.Contains(s, t) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	x.t.Fatalf("screen never showed %q:\n%s", texts, s)
	return ""
}

// keep writes a capture to docs/screens when PGREPLICA_SCREENS is set
// (how the README's screenshots are made).
func keep(t *testing.T, name, screen string) {
	dir := os.Getenv("PGREPLICA_SCREENS")
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(screen), 0o644); err != nil {
		t.Errorf("write screen %s: %v", name, err)
	}
}

// typeText types s literally (no key names).
func (x *tmux) typeText(s string) {
	x.t.Helper()
	x.run("send-keys", "-t", x.name, "-l", s)
	time.Sleep(150 * time.Millisecond)
}

type e2eReplica struct{ name, dsn string }

// wizardFromEmpty drives the wizard in a tmux pane of 80 x height (80x24,
// or 80x23: what tmux leaves in an 80x24 terminal) from no config and EMPTY replica databases to
// running replication, as a new user would: the DSNs and the replicas'
// names are typed in, the missing tables are created by the wizard, every
// writing step is confirmed. It returns the session, with the monitor
// showing.
func wizardFromEmpty(t *testing.T, origin string, replicas []e2eReplica, height int, screens bool) *tmux {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed: this test drives the TUI in a real terminal (scripts/test.sh installs it; apt-get install -y tmux)")
	}
	bin := binary(t)
	shot := func(name, s string) {
		if screens {
			keep(t, name, s)
		}
	}
	dir := t.TempDir()
	x := &tmux{t: t, name: fmt.Sprintf("pgreplica-e2e-%d-%d", os.Getpid(), len(replicas))}
	x.run("new-session", "-d", "-s", x.name, "-x", "80", "-y", fmt.Sprint(height), "-c", dir, "-e", "LANG=C.UTF-8",
		fmt.Sprintf("%s tui --wizard", bin))
	x.run("set-option", "-t", x.name, "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", x.name).Run() })
	if size := strings.TrimSpace(x.run("display-message", "-p", "-t", x.name, "#{pane_width}x#{pane_height}")); size != fmt.Sprintf("80x%d", height) {
		t.Fatalf("pane is %s, want 80x%d", size, height)
	}

	// 1 Connect & check: no config, so the wizard asks; DSNs are typed.
	x.waitFor(20*time.Second, "Where are the databases?", "▸ set name")
	x.keys("C-u")
	x.typeText("shop")
	x.keys("Tab")
	x.typeText(origin)
	for i, r := range replicas {
		if i > 0 {
			x.keys("C-n")
		} else {
			x.keys("Tab")
		}
		x.keys("C-u")
		x.typeText(r.name)
		x.keys("Tab")
		x.typeText(r.dsn)
	}
	s := x.screen()
	shot("wizard-1-dsns", s)
	if !strings.Contains(s, "█") || !strings.Contains(s, "▸ replica") {
		t.Errorf("the focused field is not marked:\n%s", s)
	}
	x.keys("Enter")
	s = x.waitFor(30*time.Second, "Connect & check", "ready")
	shot("wizard-1-connect", s)
	if _, err := os.Stat(filepath.Join(dir, "pgreplica.yaml")); err != nil {
		t.Fatalf("config not written: %v", err)
	}
	// 2 Backup with pg_dump.
	x.keys("Enter")
	x.waitFor(10*time.Second, "2 · Backup", "enter runs pg_dump")
	x.keys("Enter")
	s = x.waitFor(60*time.Second, ".dump written:")
	shot("wizard-2-backup", s)
	// 3 Pick tables: the replicas are empty; the wizard offers to create
	// the tables there, shows the plan, and asks.
	x.keys("Enter")
	s = x.waitFor(10*time.Second, "0 of 6 selected", "NOT ON REPLICA", "c creates them")
	shot("wizard-3-pick-empty-replica", s)
	x.keys("c")
	s = x.waitFor(5*time.Second, "Create 5 missing tables on the replicas?", "CREATE TABLE")
	shot("wizard-3-create-plan", s)
	x.keys("Enter")
	x.waitFor(5*time.Second, "cancelled: nothing changed")
	for _, r := range replicas {
		if hasTable(t, r.dsn, "public.customers") {
			t.Fatal("enter alone created the tables")
		}
	}
	x.keys("c", "y")
	s = x.waitFor(30*time.Second, "5 tables created on the replicas", "5 of 6 selected")
	shot("wizard-3-pick", s)
	x.keys("Enter")
	// 4 Install: enter alone does not confirm; y does.
	s = x.waitFor(10*time.Second, "PLAN")
	shot("wizard-4-install", s)
	x.keys("Enter")
	s = x.waitFor(5*time.Second, "Install capture on the origin?")
	shot("wizard-4-confirm", s)
	x.keys("Enter")
	x.waitFor(5*time.Second, "cancelled: nothing changed")
	if n := countTriggers(t, origin); n != 0 {
		t.Fatalf("enter alone installed %d triggers", n)
	}
	x.keys("Enter", "y")
	x.waitFor(30*time.Second, "enter continues to the initial copy")
	// 5 Initial copy: it names each replica and what it replaces (nothing:
	// the tables were just created), and asks.
	x.keys("Enter", "Enter")
	s = x.waitFor(10*time.Second, "Copy 5 tables to", "nothing is replaced")
	shot("wizard-5-confirm", s)
	for _, r := range replicas {
		if !strings.Contains(s, "replica "+r.name+":") {
			t.Errorf("the copy's confirmation does not name %s:\n%s", r.name, s)
		}
	}
	x.keys("y")
	s = x.waitFor(60*time.Second, "every table copied")
	shot("wizard-5-copy", s)
	// 6 Smoke test: it asks first.
	x.keys("Enter", "Enter")
	x.waitFor(5*time.Second, "Run the smoke test?")
	x.keys("y")
	s = x.waitFor(60*time.Second, "smoke test passed")
	shot("wizard-6-smoke", s)
	// 7 Start replication here: the monitor opens with the engine running.
	x.keys("Enter")
	s = x.waitFor(10*time.Second, "How should the replay engine run?")
	shot("wizard-7-start", s)
	x.keys("Enter")
	want := []string{"[2 Monitor]", "engine RUNNING"}
	for _, r := range replicas {
		want = append(want, r.name)
	}
	x.waitFor(20*time.Second, append(want, "STREAMING")...)
	return x
}

// checkReplicated writes on the origin and waits until every replica
// equals it.
func checkReplicated(t *testing.T, x *tmux, origin string, replicas []e2eReplica) {
	ctx := context.Background()
	if err := execDSN(ctx, origin, `INSERT INTO customers VALUES (9001, 'New', 'n@example.com', now());
	    UPDATE orders SET status = 'shipped' WHERE id <= 20; DELETE FROM order_items WHERE order_id = 3;
	    UPDATE "Gift Cards" SET "Note" = 'é "quoted"' WHERE "Code" = 'GC-1'`); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		cfg, err := config.FromFlags("shop", origin, []string{r.dsn})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			cmp, err := demo.Compare(ctx, cfg, demo.Tables)
			if err == nil && cmp.Equal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s never equal to the origin: %v %+v\n%s", r.name, err, cmp.Differences, x.screen())
			}
			time.Sleep(300 * time.Millisecond)
		}
		if hasTable(t, r.dsn, "public.audit_log") {
			t.Errorf("the table without a key was created on %s", r.name)
		}
		if hasTable(t, r.dsn, "public.pgreplica_smoke") {
			t.Errorf("pgreplica_smoke left in %s", r.name)
		}
	}
	if n := countTriggers(t, origin); n != 5 {
		t.Errorf("%d tables captured, want 5", n)
	}
	if hasTable(t, origin, "public.pgreplica_smoke") {
		t.Error("pgreplica_smoke left on the origin")
	}
}

func execDSN(ctx context.Context, dsn, sql string) error {
	conn, err := pg.Connect(ctx, "test", dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// quitAsks: q asks while the engine runs here; y quits and the terminal
// says replication stopped and how to run the daemon.
func quitAsks(t *testing.T, x *tmux) {
	x.keys("q")
	x.waitFor(5*time.Second, "Quit and stop replication?")
	x.keys("Enter")
	x.waitFor(5*time.Second, "cancelled: nothing changed", "engine RUNNING")
	x.keys("q", "y")
	deadline := time.Now().Add(20 * time.Second)
	for strings.TrimSpace(x.run("display-message", "-p", "-t", x.name, "#{pane_dead}")) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("q y did not quit:\n%s", x.screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := x.run("capture-pane", "-p", "-J", "-S", "-100", "-t", x.name) // with what scrolled off
	if !strings.Contains(s, "replication stopped") || !strings.Contains(s, "run --daemon") {
		t.Errorf("no line on exit saying replication stopped and how to run the daemon:\n%s", s)
	}
	if strings.Contains(s, "panic") || strings.Contains(s, "level=") {
		t.Errorf("stray output on the terminal:\n%s", s)
	}
}

func e2eDatabases(t *testing.T, nReplicas int) (origin string, replicas []e2eReplica) {
	ctx := context.Background()
	pair := shared.Get(t)
	o, r := pair.DBs(t)
	if err := pair.Origin.Exec(ctx, dsnDB(o), demo.Schema+"; CREATE TABLE audit_log (at timestamptz, what text)"); err != nil {
		t.Fatal(err)
	}
	if err := pair.Origin.Exec(ctx, dsnDB(o), demo.Data); err != nil {
		t.Fatal(err)
	}
	names := []string{"reporting", "analytics", "backup-dc2"}
	replicas = append(replicas, e2eReplica{names[0], r}) // an EMPTY database
	for i := 1; i < nReplicas; i++ {
		db, err := pair.Replica.CreateDB(ctx, "replica")
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, e2eReplica{names[i], pair.Replica.DSN(db)})
	}
	return o, replicas
}

// TestTUIWizardEndToEnd: the wizard at 80x24 from an empty replica to
// running replication, then the databases checked; the screens of
// docs/screens and the README come from here (PGREPLICA_SCREENS=dir).
func TestTUIWizardEndToEnd(t *testing.T) {
	origin, replicas := e2eDatabases(t, 1)
	x := wizardFromEmpty(t, origin, replicas, 24, true)
	checkReplicated(t, x, origin, replicas)
	time.Sleep(2500 * time.Millisecond) // a sparkline sample or two
	keep(t, "monitor", x.screen())
	x.keys("Enter")
	keep(t, "monitor-detail", x.waitFor(5*time.Second, "─ replica reporting ─", "state"))
	x.keys("Escape", "1")
	keep(t, "tables", x.waitFor(10*time.Second, "[1 Tables]", "OK", "NO PK"))
	x.keys("3")
	keep(t, "conflicts", x.waitFor(10*time.Second, "[3 Conflicts"))
	x.keys("4")
	keep(t, "log", x.waitFor(10*time.Second, "[4 Log]"))
	x.keys("1", "?")
	keep(t, "help", x.waitFor(5*time.Second, "GLOBAL"))
	x.keys("Escape")
	quitAsks(t, x)
}

// TestTUIWizardTwoReplicas: the same from two empty replicas, each named
// in the wizard.
func TestTUIWizardTwoReplicas(t *testing.T) {
	origin, replicas := e2eDatabases(t, 2)
	x := wizardFromEmpty(t, origin, replicas, 23, false)
	checkReplicated(t, x, origin, replicas)
	quitAsks(t, x)
}

func dsnDB(dsn string) string {
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "dbname=") {
			return strings.Trim(strings.TrimPrefix(f, "dbname="), "'")
		}
	}
	return ""
}

func countTriggers(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Connect(ctx, "origin", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tables, err := capture.ListTables(ctx, conn, func(string, string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tb := range tables {
		if tb.Status == capture.Installed {
			n++
		}
	}
	return n
}

func hasTable(t *testing.T, dsn, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Connect(ctx, "db", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}
