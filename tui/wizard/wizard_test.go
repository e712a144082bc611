package wizard

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/pgtest"
	"pgreplica/core/smoke"
	"pgreplica/core/tablecopy"
	"pgreplica/tui/screen"
	"pgreplica/tui/theme"
)

var (
	shared pgtest.Shared
	update = flag.Bool("update", false, "rewrite the golden files in testdata/")
)

func TestMain(m *testing.M) {
	time.Local = time.UTC
	pgtest.Main(m, &shared)
}

var now = time.Date(2026, 11, 21, 12, 4, 33, 0, time.UTC)

func newEnv(cfg *config.Config) *screen.Env {
	return &screen.Env{Theme: theme.New(false, false), Config: cfg, Now: func() time.Time { return now }}
}

func press(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "pgdown":
		return tea.KeyPressMsg{Code: tea.KeyPgDown}
	}
	if k, ok := strings.CutPrefix(s, "ctrl+"); ok {
		return tea.KeyPressMsg{Code: []rune(k)[0], Mod: tea.ModCtrl}
	}
	return tea.KeyPressMsg{Code: []rune(s)[0], Text: s}
}

// settle runs the commands a message produced, feeding their messages
// back, until the wizard is idle (no job) or the deadline passes. Spinner
// ticks are dropped.
func settle(t *testing.T, m *Model, cmd tea.Cmd) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	queue := []tea.Cmd{cmd}
	for len(queue) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("wizard did not settle")
		}
		c := queue[0]
		queue = queue[1:]
		if c == nil {
			continue
		}
		msg := c()
		switch msg := msg.(type) {
		case nil, spinMsg:
		case tea.BatchMsg:
			queue = append(queue, msg...)
		case screen.FlashMsg:
			m.lastFlash = msg.Text
		default:
			_, next := m.Update(msg)
			queue = append(queue, next)
		}
	}
}

func send(t *testing.T, m *Model, keys ...string) {
	t.Helper()
	for _, k := range keys {
		_, cmd := m.Update(press(k))
		settle(t, m, cmd)
	}
}

func typeText(t *testing.T, m *Model, s string) {
	for _, r := range s {
		send(t, m, string(r))
	}
}

func view(m *Model) string { return ansi.Strip(m.View(100, 30)) }

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./tui/wizard -update creates it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func TestChecksReportServerDownAndNoPrimaryKey(t *testing.T) {
	ctx := context.Background()
	pair := shared.Get(t)
	o, _ := pair.DBs(t)
	if err := pair.Origin.Exec(ctx, dbName(o), `CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE loose (a int)`); err != nil {
		t.Fatal(err)
	}
	port, _ := pgtest.FreePort()
	down := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=shop connect_timeout=2", port)
	cfg, err := config.FromFlags("w", o, []string{down})
	if err != nil {
		t.Fatal(err)
	}
	m := New(newEnv(cfg), cfg, Deps{ConfigPath: filepath.Join(t.TempDir(), "pgreplica.yaml")}, nil)
	settle(t, m, m.Init())
	r := m.connect.report
	if r == nil {
		t.Fatal("no check report")
	}
	fails, warns := r.Blocking()
	if fails == 0 || warns == 0 {
		t.Fatalf("fails %d warns %d: %+v", fails, warns, r.Findings)
	}
	out := view(m)
	for _, want := range []string{"FAIL  reachable", "no", "WARN  no primary key", "1 tables", "Try:", "blocking"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
	// Blocked: enter does not move on, and no config was written.
	send(t, m, "enter")
	if m.cur != stepConnect {
		t.Fatal("enter moved past a blocking problem")
	}
	if _, err := os.Stat(m.deps.ConfigPath); !os.IsNotExist(err) {
		t.Fatal("config written despite a blocking problem")
	}
}

// TestWizardFlowToSmokeTest starts from an empty replica database: the
// pick step creates the tables there (after showing the plan and asking),
// and every writing step asks first; enter alone confirms none.
func TestWizardFlowToSmokeTest(t *testing.T) {
	ctx := context.Background()
	pair := shared.Get(t)
	o, r := pair.DBs(t)
	if err := pair.Origin.Exec(ctx, dbName(o), `CREATE TABLE items (id int PRIMARY KEY, name text); CREATE TABLE "Odd ""Name""" (k text PRIMARY KEY); CREATE TABLE nokey (a int)`); err != nil {
		t.Fatal(err)
	}
	if err := pair.Origin.Exec(ctx, dbName(o), `INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i; INSERT INTO "Odd ""Name""" VALUES ('a'), ('b')`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := &config.Config{}
	*cfg = config.Default()
	env := newEnv(cfg)
	m := New(env, cfg, Deps{ConfigPath: filepath.Join(dir, "pgreplica.yaml"), Binary: "/usr/local/bin/pgreplica", BackupDir: dir,
		CreateTables: tablecopy.CreateMissing,
		ReplicaRows: func(ctx context.Context, cfg *config.Config, tables []pg.Table) (map[string]map[pg.Table]int64, error) {
			return capture.ReplicaRows(ctx, cfg, tables, "test")
		},
		Copy: func(ctx context.Context, cfg *config.Config, tables []pg.Table, progress func(CopyProgress)) error {
			return tablecopy.Sync(ctx, cfg, tablecopy.Options{Tables: tables}, func(p tablecopy.Progress) {
				progress(CopyProgress{Replica: p.Replica, Table: p.Table, Rows: p.Rows, TotalRows: p.TotalRows, Done: p.Done})
			})
		}}, fmt.Errorf("no configuration"))
	settle(t, m, m.Init())
	if !m.connect.editing {
		t.Fatal("without a config the wizard should ask for the DSNs")
	}
	send(t, m, "ctrl+u")
	m.connect.inputs[0].Value = ""
	typeText(t, m, "flow")
	send(t, m, "tab")
	typeText(t, m, o)
	// A long DSN scrolls to its end, where typing goes, in the focused
	// field (marked).
	if out := ansi.Strip(m.View(80, 17)); !strings.Contains(out, "▸ origin") || !strings.Contains(out, dbName(o)+" sslmode=disable█") {
		t.Errorf("the focused DSN field does not show its end:\n%s", out)
	}
	send(t, m, "tab", "ctrl+u")
	typeText(t, m, "reporting")
	send(t, m, "tab")
	typeText(t, m, r)
	send(t, m, "enter")
	if len(m.cfg.Replicas) != 1 || m.cfg.Replicas[0].Name != "reporting" {
		t.Fatalf("replica not named by the operator: %+v", m.cfg.Replicas)
	}
	if m.states[stepConnect] != done {
		t.Fatalf("checks did not pass:\n%s", view(m))
	}
	if _, err := config.Load(m.deps.ConfigPath); err != nil {
		t.Fatalf("config not written: %v", err)
	}

	// Backup: skipping needs the database name typed; enter alone and a
	// wrong name do not confirm.
	send(t, m, "enter")
	if m.cur != stepBackup {
		t.Fatalf("at step %d", m.cur+1)
	}
	send(t, m, "S")
	if m.prompt == nil || m.prompt.Level != 3 {
		t.Fatal("S did not open a typed confirmation")
	}
	send(t, m, "enter")
	typeText(t, m, "wrong")
	send(t, m, "enter")
	if m.states[stepBackup] == done || m.prompt == nil {
		t.Fatal("a wrong name confirmed the skip")
	}
	send(t, m, "esc")
	// Run pg_dump for real instead.
	send(t, m, "enter")
	if m.states[stepBackup] != done {
		t.Fatalf("backup: %v\n%s", m.backup.err, view(m))
	}
	if st, err := os.Stat(m.backup.file.Value); err != nil || st.Size() == 0 {
		t.Fatalf("dump file: %v", err)
	}

	// Pick: the table without a key cannot be selected.
	send(t, m, "enter")
	if m.cur != stepPick || len(m.pick.rows) != 3 {
		t.Fatalf("pick: step %d rows %d", m.cur+1, len(m.pick.rows))
	}
	for _, row := range m.pick.rows {
		if row.info.Table.Name == "nokey" && (row.selected || row.reason == "") {
			t.Fatal("nokey is selectable")
		}
	}
	if !strings.Contains(view(m), "NO PK") {
		t.Errorf("pick view:\n%s", view(m))
	}
	// The replica is empty: nothing can be picked until the tables exist
	// there; enter says how to create them.
	send(t, m, "enter")
	if m.cur != stepPick || !strings.Contains(m.lastFlash, "c creates them") {
		t.Fatalf("enter with every table missing on the replica: step %d, flash %q", m.cur+1, m.lastFlash)
	}
	golden(t, "pick-missing-80x17", ansi.Strip(m.View(80, 17)))
	send(t, m, "c")
	if m.prompt == nil || !strings.Contains(strings.Join(m.prompt.Body, " "), `CREATE TABLE public."Odd ""Name""", public.items`) {
		t.Fatalf("c shows no plan: %+v", m.prompt)
	}
	send(t, m, "enter")
	if m.prompt != nil || hasTable(t, pair.Replica, r, "items") {
		t.Fatal("enter alone created the tables")
	}
	send(t, m, "c", "y")
	if !hasTable(t, pair.Replica, r, "items") || !hasTable(t, pair.Replica, r, `Odd "Name"`) || hasTable(t, pair.Replica, r, "nokey") {
		t.Fatalf("tables not created on the replica: %v\n%s", m.pick.createErr, view(m))
	}
	if got := len(m.pick.selected()); got != 2 {
		t.Fatalf("created tables are not selected: %d selected\n%s", got, view(m))
	}
	// The replica holds rows of its own: the copy names them and wants
	// the replica's name typed.
	if err := pair.Replica.Exec(ctx, dbName(r), `INSERT INTO items VALUES (1001, 'stale'), (1002, 'stale'), (1003, 'stale')`); err != nil {
		t.Fatal(err)
	}
	send(t, m, "enter")

	// Install: enter alone does not confirm; y does.
	if m.cur != stepInstall {
		t.Fatalf("at step %d", m.cur+1)
	}
	send(t, m, "enter", "enter")
	if m.states[stepInstall] == done {
		t.Fatal("enter alone confirmed the install")
	}
	send(t, m, "enter", "y")
	if m.states[stepInstall] != done {
		t.Fatalf("install: %v", m.install.err)
	}
	send(t, m, "enter", "enter") // to the copy; its confirmation
	rname := m.cfg.Replicas[0].Name
	if m.prompt == nil || m.prompt.Level != 3 || m.prompt.Expect != rname ||
		!strings.Contains(strings.Join(m.prompt.Body, " "), "replica "+rname+": ~3 rows are DELETED") {
		t.Fatalf("copy prompt: %+v", m.prompt)
	}
	send(t, m, "enter")
	if m.states[stepCopy] == done || m.prompt == nil {
		t.Fatal("enter alone confirmed the copy")
	}
	typeText(t, m, rname)
	send(t, m, "enter")
	if m.states[stepCopy] != done {
		t.Fatalf("copy: %v\n%s", m.copy.err, view(m))
	}
	send(t, m, "enter", "enter") // to the smoke test: it asks
	if m.prompt == nil || !strings.Contains(m.prompt.Title, "smoke test") {
		t.Fatal("the smoke test does not ask")
	}
	send(t, m, "enter")
	if m.prompt != nil || m.states[stepSmoke] == done || len(m.smoke.steps) > 0 {
		t.Fatal("enter alone ran the smoke test")
	}
	send(t, m, "enter", "y")
	if m.states[stepSmoke] != done {
		t.Fatalf("smoke:\n%s", view(m))
	}
	if !strings.Contains(view(m), "smoke test passed") {
		t.Errorf("smoke view:\n%s", view(m))
	}
	send(t, m, "enter", "j")
	send(t, m, "enter") // systemd unit
	unit, err := os.ReadFile(filepath.Join(dir, "pgreplica.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/local/bin/pgreplica --config "+filepath.Join(dir, "pgreplica.yaml")+" run --daemon") {
		t.Fatalf("unit: %v\n%s", err, unit)
	}

	// Re-entering resumes where the databases are: at the smoke test.
	loaded, err := config.Load(m.deps.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	again := New(newEnv(loaded), loaded, Deps{ConfigPath: m.deps.ConfigPath}, nil)
	settle(t, again, again.Init())
	if again.cur != stepSmoke {
		t.Fatalf("resumed at step %d, want 6:\n%s", again.cur+1, view(again))
	}
}

func TestSmokeTimeoutView(t *testing.T) {
	cfg, _ := config.FromFlags("shop", "host=db1 dbname=shop user=pgreplica", []string{"host=db2 dbname=shop user=pgreplica"})
	m := New(newEnv(cfg), cfg, Deps{}, nil)
	m.cur = stepSmoke
	for i := range stepSmoke {
		m.states[i] = done
	}
	m.states[stepSmoke] = failed
	m.smoke.steps = []smoke.Step{{Op: "INSERT", Replica: "replica", Err: "not seen within 10s"}}
	m.smoke.result = &smoke.Result{Steps: m.smoke.steps,
		Diagnosis: "no replay engine is running for set shop: start one (pgreplica run, or the systemd unit) or let the test start one",
		Cleanup:   "public.pgreplica_smoke was left on the replicas: drop it there once replay has caught up"}
	out := ansi.Strip(m.View(80, 18))
	golden(t, "smoke-timeout-80x18", out)
	for _, want := range []string{"✗ INSERT", "not seen within 10s", "smoke test failed", "Why: no replay engine", "Try:"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

func hasTable(t *testing.T, c *pgtest.Cluster, dsn, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", pg.Table{Schema: "public", Name: name}.Ident()).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func dbName(dsn string) string {
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "dbname=") {
			return strings.Trim(strings.TrimPrefix(f, "dbname="), "'")
		}
	}
	return ""
}
