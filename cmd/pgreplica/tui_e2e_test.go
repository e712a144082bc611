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

// TestTUIWizardEndToEnd drives the wizard in tmux from nothing to a running
// replication, then checks the databases.
func TestTUIWizardEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed: this test drives the TUI in a real terminal (scripts/test.sh installs it; apt-get install -y tmux)")
	}
	ctx := context.Background()
	bin := binary(t)
	pair := shared.Get(t)
	o, r := pair.DBs(t)
	for _, c := range []struct {
		exec func(context.Context, string, string, ...any) error
		dsn  string
		data bool
	}{{pair.Origin.Exec, o, true}, {pair.Replica.Exec, r, false}} {
		db := dsnDB(c.dsn)
		if err := c.exec(ctx, db, demo.Schema+"; CREATE TABLE audit_log (at timestamptz, what text)"); err != nil {
			t.Fatal(err)
		}
		if c.data {
			if err := c.exec(ctx, db, demo.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	x := &tmux{t: t, name: fmt.Sprintf("pgreplica-e2e-%d", os.Getpid())}
	x.run("new-session", "-d", "-s", x.name, "-x", "100", "-y", "30", "-c", dir, "-e", "LANG=C.UTF-8",
		fmt.Sprintf("%s tui --wizard --name shop --origin %q --replica %q", bin, o, r))
	x.run("set-option", "-t", x.name, "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", x.name).Run() })

	// 1 Connect & check: the table without a key is a warning, not a block.
	s := x.waitFor(30*time.Second, "Connect & check", "ready", "WARN  no primary key")
	keep(t, "wizard-1-connect", s)
	if _, err := os.Stat(filepath.Join(dir, "pgreplica.yaml")); err != nil {
		t.Fatalf("config not written: %v", err)
	}
	// 2 Backup with pg_dump.
	x.keys("Enter")
	x.waitFor(10*time.Second, "2 · Backup", "enter runs pg_dump")
	x.keys("Enter")
	s = x.waitFor(60*time.Second, ".dump written:")
	keep(t, "wizard-2-backup", s)
	// 3 Pick tables: audit_log has no key and cannot be selected.
	x.keys("Enter")
	s = x.waitFor(10*time.Second, "5 of 6 selected", "NO PK")
	keep(t, "wizard-3-pick", s)
	x.keys("Enter")
	// 4 Install: enter alone does not confirm; y does.
	s = x.waitFor(10*time.Second, "PLAN", "a capture trigger on each of the 5 picked tables")
	keep(t, "wizard-4-install", s)
	x.keys("Enter")
	s = x.waitFor(5*time.Second, "Install capture on the origin?")
	keep(t, "wizard-4-confirm", s)
	x.keys("Enter")
	x.waitFor(5*time.Second, "cancelled: nothing changed")
	if n := countTriggers(t, o); n != 0 {
		t.Fatalf("enter alone installed %d triggers", n)
	}
	x.keys("Enter", "y")
	x.waitFor(30*time.Second, "enter continues to the initial copy")
	// 5 Initial copy.
	x.keys("Enter", "Enter")
	s = x.waitFor(60*time.Second, "every table copied")
	keep(t, "wizard-5-copy", s)
	// 6 Smoke test.
	x.keys("Enter", "Enter")
	s = x.waitFor(60*time.Second, "smoke test passed")
	keep(t, "wizard-6-smoke", s)
	for _, op := range []string{"INSERT", "UPDATE", "DELETE"} {
		if !strings.Contains(s, "✓ "+op) {
			t.Errorf("smoke: no %s line:\n%s", op, s)
		}
	}
	// 7 Start replication here: the monitor opens with the engine running.
	x.keys("Enter")
	s = x.waitFor(10*time.Second, "How should the replay engine run?")
	keep(t, "wizard-7-start", s)
	x.keys("Enter")
	x.waitFor(20*time.Second, "[2 Monitor]", "STREAMING", "engine RUNNING")

	// Write on the origin; the running replication brings it over.
	if err := pair.Origin.Exec(ctx, dsnDB(o), `INSERT INTO customers VALUES (9001, 'New', 'n@example.com', now());
	    UPDATE orders SET status = 'shipped' WHERE id <= 20; DELETE FROM order_items WHERE order_id = 3;
	    UPDATE "Gift Cards" SET "Note" = 'é "quoted"' WHERE "Code" = 'GC-1'`); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.FromFlags("shop", o, []string{r})
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
			t.Fatalf("replica never equal to the origin: %v %+v\n%s", err, cmp.Differences, x.screen())
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Triggers installed on the 5 picked tables, none on the keyless one.
	if n := countTriggers(t, o); n != 5 {
		t.Errorf("%d tables captured, want 5", n)
	}
	// The smoke test cleaned up after itself on both sides.
	for _, dsn := range []string{o, r} {
		if hasTable(t, dsn, "public.pgreplica_smoke") {
			t.Errorf("pgreplica_smoke left in %s", dsn)
		}
	}
	time.Sleep(2500 * time.Millisecond) // a sparkline sample or two
	keep(t, "monitor", x.screen())
	x.keys("1")
	keep(t, "tables", x.waitFor(10*time.Second, "[1 Tables]", "OK"))
	x.keys("3")
	keep(t, "conflicts", x.waitFor(10*time.Second, "[3 Conflicts"))
	x.keys("4")
	keep(t, "log", x.waitFor(10*time.Second, "[4 Log]"))
	x.keys("1", "?")
	keep(t, "help", x.waitFor(5*time.Second, "GLOBAL"))
	x.keys("Escape")

	// q stops the engine after the batch in flight and quits.
	x.keys("q")
	deadline = time.Now().Add(20 * time.Second)
	for strings.TrimSpace(x.run("display-message", "-p", "-t", x.name, "#{pane_dead}")) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("q did not quit:\n%s", x.screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := x.screen(); strings.Contains(s, "panic") || strings.Contains(s, "level=") {
		t.Errorf("stray output on the terminal:\n%s", s)
	}
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
