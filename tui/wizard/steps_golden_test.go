package wizard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/preflight"
	"pgreplica/core/smoke"
)

// stepsModel is a wizard for two replicas with every step's state built
// by hand (no database): for goldens of each step's body.
func stepsModel(t *testing.T) *Model {
	t.Helper()
	cfg, err := config.FromFlags("shop", "host=db1 dbname=shop user=pgreplica",
		[]string{"host=db2 dbname=shop user=pgreplica", "host=db3.example.com port=6432 dbname=shop_reporting user=pgreplica"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Replicas[0].Name, cfg.Replicas[1].Name = "reporting", "analytics"
	m := New(newEnv(cfg), cfg, Deps{ConfigPath: "/etc/pgreplica/shop.yaml", Binary: "/usr/local/bin/pgreplica", BackupDir: "/var/backups",
		CreateTables: func(context.Context, *config.Config, []pg.Table, func(string)) error { return nil }}, nil)
	m.connect.editing = false
	m.connect.report = &CheckReport{
		Nodes: []string{"origin", "replica reporting", "replica analytics"},
		Results: []preflight.Result{
			{Check: "reachable", Severity: preflight.Fail, Values: []string{"15.8", "16.4", "no"},
				Problem: "connect to replica analytics (pgreplica@db3.example.com:6432/shop_reporting): dial error: dial tcp 10.0.0.7:6432: connect: connection refused",
				Try:     "start the server or fix the DSN (e edits it), then r"},
			{Check: "version >= 13", Severity: preflight.OK, Values: []string{"yes", "yes", "–"}},
			{Check: "CREATE on db", Severity: preflight.OK, Values: []string{"yes", "yes", "–"}},
			{Check: "TRIGGER on", Severity: preflight.OK, Values: []string{"8/8 tables", "n/a", "n/a"}},
			{Check: "tables on replica", Severity: preflight.Warn, Values: []string{"8 tables", "8 missing", "–"},
				Problem: "replica reporting lacks 8 tables", Try: "the pick step creates them (c)"},
			{Check: "pg_dump client", Severity: preflight.OK, Values: []string{"15", "n/a", "n/a"}},
			{Check: "no primary key", Severity: preflight.Warn, Values: []string{"1 tables", "n/a", "n/a"},
				Problem: "1 table has no primary key: it cannot be replicated", Try: "ALTER TABLE … ADD PRIMARY KEY (…), or leave it out in step 3"},
			{Check: "capture installed", Severity: preflight.OK, Values: []string{"not yet"}},
			{Check: "clock skew", Severity: preflight.OK, Values: []string{"12 ms", "14 ms", "–"}},
		},
		Took: 800 * time.Millisecond, Database: "shop",
	}
	m.states[stepConnect] = failed
	tb := func(s, n string) pg.Table { return pg.Table{Schema: s, Name: n} }
	tables := []capture.TableInfo{
		{Table: tb("public", "customers"), Key: []string{"id"}}, {Table: tb("public", "orders"), Key: []string{"id"}},
		{Table: tb("public", "order_items"), Key: []string{"order_id", "line_no"}}, {Table: tb("sales", "Customers"), Key: []string{"id"}},
		{Table: tb("public", "audit_log")},
	}
	missing := map[pg.Table][]string{}
	est := map[pg.Table]int64{}
	for i, x := range tables {
		if len(x.Key) > 0 {
			missing[x.Table] = []string{"reporting", "analytics"}
		}
		est[x.Table] = int64(1000 * (i + 1))
	}
	m.tablesLoaded(tablesResult{tables: tables, estimates: est, missing: missing}, nil)
	m.pick.confirmed = []pg.Table{tables[0].Table, tables[1].Table, tables[2].Table, tables[3].Table}
	m.copy.prepare(m)
	for i := range m.copy.rows {
		if i < 3 {
			m.copy.rows[i].p = CopyProgress{Rows: 1000, TotalRows: 1000, Done: true}
			m.copy.rows[i].took = 1200 * time.Millisecond
		}
	}
	m.smoke.steps = []smoke.Step{{Op: "INSERT", Replica: "reporting", Took: 41 * time.Millisecond}, {Op: "INSERT", Replica: "analytics", Took: 45 * time.Millisecond},
		{Op: "UPDATE", Replica: "reporting", Took: 38 * time.Millisecond}, {Op: "UPDATE", Replica: "analytics", Took: 40 * time.Millisecond},
		{Op: "DELETE", Replica: "reporting", Took: 39 * time.Millisecond}, {Op: "DELETE", Replica: "analytics", Took: 44 * time.Millisecond}}
	r := smoke.Result{Steps: m.smoke.steps}
	m.smoke.result = &r
	return m
}

// TestWizardStepsGolden renders every step's body at 80x24 and 80x23 (the
// body is 18 or 17 rows under the root's chrome) and checks that no line is
// wider than the window and that what matters is on screen or a scroll away.
func TestWizardStepsGolden(t *testing.T) {
	for _, h := range []int{18, 17} {
		m := stepsModel(t)
		for step := range nSteps {
			m.cur = step
			m.bodyTop = 0
			if step == stepBackup {
				m.backup.prepare(m)
			}
			out := ansi.Strip(m.View(80, h))
			name := fmt.Sprintf("step-%d-80x%d", step+1, h+6)
			golden(t, name, out)
			lines := strings.Split(out, "\n")
			if len(lines) != h {
				t.Errorf("%s: %d lines", name, len(lines))
			}
			for i, l := range lines {
				if ansi.StringWidth(l) > 80 {
					t.Errorf("%s line %d is %d wide", name, i, ansi.StringWidth(l))
				}
			}
		}
		// Step 1's blocking problem: the verdict is on screen, the whole
		// error a scroll away.
		m.cur = stepConnect
		out := ansi.Strip(m.View(80, h))
		if !strings.Contains(out, "1 blocking") || !strings.Contains(out, "↓ lines") {
			t.Errorf("step 1 at 80x%d: no verdict or no scroll hint:\n%s", h+6, out)
		}
		var seen string
		for range 10 {
			m.key(press("pgdown"))
			seen += ansi.Strip(m.View(80, h))
		}
		if !strings.Contains(seen, "connection refused") || !strings.Contains(seen, "Try: start the server") {
			t.Errorf("step 1: the error's cause and fix are out of reach:\n%s", seen)
		}
	}
}

var _ = errors.New
