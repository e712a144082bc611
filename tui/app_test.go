package tui

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/logring"
	"pgreplica/core/pg"
	"pgreplica/core/pgtest"
	"pgreplica/tui/source"
	"pgreplica/tui/theme"
)

var shared pgtest.Shared

// TestTablesInstallAndRemoveOnRealDatabases drives the Tables screen as
// NewApp wires it to core, against real clusters: a table created after the
// install shows MISSING; i then y installs its trigger; d then y removes it.
func TestTablesInstallAndRemoveOnRealDatabases(t *testing.T) {
	defer func() { cmdTimeout = 100 * time.Millisecond }()
	cmdTimeout = 20 * time.Second
	ctx := context.Background()
	pair := shared.Get(t)
	o, r := pair.DBs(t)
	for _, c := range []struct {
		cl  *pgtest.Cluster
		dsn string
	}{{pair.Origin, o}, {pair.Replica, r}} {
		if err := c.cl.Exec(ctx, dbOf(c.dsn), `CREATE TABLE first (id int PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.FromFlags("app", o, []string{r})
	if err != nil {
		t.Fatal(err)
	}
	if err := capture.Install(ctx, cfg, func(string) {}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cl  *pgtest.Cluster
		dsn string
	}{{pair.Origin, o}, {pair.Replica, r}} {
		if err := c.cl.Exec(ctx, dbOf(c.dsn), `CREATE TABLE later (id int PRIMARY KEY); CREATE TABLE loose (a int)`); err != nil {
			t.Fatal(err)
		}
	}
	ring := logring.New(100)
	log := slog.New(ring.Handler(slog.LevelInfo))
	m := NewApp(AppOptions{Config: cfg, Theme: theme.New(false, false), Ring: ring, Log: log, Version: "test",
		Source: &source.Static{Snap: source.Snapshot{Kind: "engine"}}})
	m.env.Now = func() time.Time { return now }
	drive(m, tea.WindowSizeMsg{Width: 100, Height: 30})
	drive(m, press("1"))
	m = runCmd(m, m.opt.Tabs[0].Screen.Init(), 0).(*Model)
	out := ansi.Strip(m.Render())
	if !strings.Contains(out, "MISSING    public.later") || !strings.Contains(out, "NO PK      public.loose") {
		t.Fatalf("tables view:\n%s", out)
	}
	if !strings.Contains(selectedLine(out), "public.later") {
		t.Fatalf("cursor not on the missing table (problems first): %q", selectedLine(out))
	}
	drive(m, press("i"))
	drive(m, press("y"))
	if st := statusOf(t, o, "later"); st != capture.Installed {
		t.Fatalf("after i, y: later is %s", st)
	}
	out = ansi.Strip(m.Render())
	if !strings.Contains(out, "OK         public.later") {
		t.Errorf("view not refreshed after install:\n%s", out)
	}
	// The action is audited in the log with who did it.
	var audited bool
	for _, rec := range ring.Since(0, 100) {
		if strings.Contains(rec.Message, "install capture on public.later") && rec.Get("user") != "" {
			audited = true
		}
	}
	if !audited {
		t.Error("install not audited")
	}
	// Remove it again; the cursor stays on the same table.
	drive(m, press("d"))
	drive(m, press("enter")) // does not confirm
	if st := statusOf(t, o, "later"); st != capture.Installed {
		t.Fatal("enter confirmed the removal")
	}
	if !strings.Contains(selectedLine(ansi.Strip(m.Render())), "public.later") {
		t.Fatalf("cursor moved: %q", selectedLine(ansi.Strip(m.Render())))
	}
	drive(m, press("d"))
	drive(m, press("y"))
	// A removed table is not captured again silently (its replicas missed
	// changes meanwhile): it shows as needing a new copy.
	if st := statusOf(t, o, "later"); st != capture.Removed {
		t.Fatalf("after d, y: later is %s", st)
	}
}

func statusOf(t *testing.T, dsn, table string) capture.Status {
	t.Helper()
	ctx := context.Background()
	conn, err := pg.Connect(ctx, "origin", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tables, err := capture.ListTables(ctx, conn, func(_, n string) bool { return n == table })
	if err != nil || len(tables) != 1 {
		t.Fatalf("list %s: %v %v", table, err, tables)
	}
	return tables[0].Status
}

func dbOf(dsn string) string {
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "dbname=") {
			return strings.Trim(strings.TrimPrefix(f, "dbname="), "'")
		}
	}
	return ""
}
