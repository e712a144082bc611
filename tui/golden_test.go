package tui

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/copystate"
	"pgreplica/core/logring"
	"pgreplica/core/pg"
	"pgreplica/core/pgtest"
	"pgreplica/core/replay"
	"pgreplica/tui/conflicts"
	"pgreplica/tui/logpane"
	"pgreplica/tui/monitor"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
	"pgreplica/tui/tables"
	"pgreplica/tui/theme"
)

var cmdTimeout = 100 * time.Millisecond

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// now is the fixed clock of the golden tests.
var now = time.Date(2026, 11, 21, 12, 4, 33, 0, time.UTC)

func TestMain(m *testing.M) {
	time.Local = time.UTC
	pgtest.Main(m, &shared)
}

// golden compares got with testdata/name.golden (colour stripped).
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = ansi.Strip(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tui -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test ./tui -update rewrites it)\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

// drive sends msg and then runs the commands it returns that finish
// quickly (flashes, batches), feeding their messages back.
func drive(m tea.Model, msg tea.Msg) tea.Model {
	m, cmd := m.Update(msg)
	return runCmd(m, cmd, 0)
}

func runCmd(m tea.Model, cmd tea.Cmd, depth int) tea.Model {
	if cmd == nil || depth > 5 {
		return m
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	select {
	case msg := <-ch:
		switch msg := msg.(type) {
		case nil:
		case tea.BatchMsg:
			for _, c := range msg {
				m = runCmd(m, c, depth+1)
			}
		default:
			var next tea.Cmd
			m, next = m.Update(msg)
			m = runCmd(m, next, depth+1)
		}
	case <-time.After(cmdTimeout):
	}
	return m
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
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

func typeText(m tea.Model, s string) tea.Model {
	for _, r := range s {
		m = drive(m, press(string(r)))
	}
	return m
}

func testConfig() *config.Config {
	cfg, err := config.FromFlags("shop", "host=db1 port=5432 user=pgreplica dbname=shop", []string{"host=db2 port=5432 user=pgreplica dbname=shop", "host=db3 port=5432 user=pgreplica dbname=shop"})
	if err != nil {
		panic(err)
	}
	cfg.Replicas[0].Name, cfg.Replicas[1].Name = "replica-1", "replica-2"
	return cfg
}

type fixture struct {
	env  *screen.Env
	root *Model
	tab  *tables.Model
	mon  *monitor.Model
	con  *conflicts.Model
}

func newFixture(mono bool) *fixture {
	env := &screen.Env{Theme: theme.New(mono, false), Config: testConfig(), Now: func() time.Time { return now }}
	f := &fixture{env: env}
	f.tab = tables.New(env, tables.Deps{})
	f.mon = monitor.New(env, true)
	f.con = conflicts.New(env, conflicts.Deps{})
	src := &source.Static{Snap: source.Snapshot{Kind: "engine"}}
	f.root = New(Options{Env: env, Source: src, Version: "0.1.0", Monitor: 1, Tabs: []Tab{
		{Name: "Tables", Screen: f.tab},
		{Name: "Monitor", Screen: f.mon},
		{Name: "Conflicts", Screen: f.con, Badge: func() string {
			if n := f.con.Count(); n > 0 {
				return screen.Count(int64(n))
			}
			return ""
		}},
		{Name: "Log", Screen: logpane.NewScreen(env)},
	}})
	return f
}

func (f *fixture) send(msgs ...tea.Msg) {
	for _, msg := range msgs {
		drive(f.root, msg)
	}
}

func sampleTables() []capture.TableInfo {
	tb := func(s, n string) pg.Table { return pg.Table{Schema: s, Name: n} }
	return []capture.TableInfo{
		{Table: tb("public", "customers"), Key: []string{"id"}, Status: capture.Installed, Pending: 0, Last: now.Add(-12 * time.Second)},
		{Table: tb("public", "invoices"), Key: []string{"id"}, Status: capture.Missing},
		{Table: tb("public", "order_items"), Key: []string{"order_id", "line_no"}, Status: capture.Installed, Pending: 40, Last: now.Add(-400 * time.Millisecond)},
		{Table: tb("public", "orders"), Key: []string{"id"}, Status: capture.Installed, Pending: 12, Last: now.Add(-400 * time.Millisecond)},
		{Table: tb("public", "orders_2019"), Status: capture.NoKey},
		{Table: tb("public", "Gift Cards"), Key: []string{"Code"}, Status: capture.Installed, Last: now.Add(-2 * time.Hour)},
		{Table: tb("public", "sessions"), Key: []string{"id"}, Status: capture.Disabled, Pending: 1204, Last: now.Add(-3 * time.Minute)},
		{Table: tb("sales", "order_audit"), Status: capture.NoKey},
	}
}

func sampleReport(at time.Time, applied1, applied2 int64) replay.Report {
	return replay.Report{Set: "shop", Origin: "pgreplica@db1:5432/shop", TakenAt: at, Replicas: []replay.ReplicaReport{
		{Name: "replica-1", Reachable: true, Pending: 12, Lag: 400 * time.Millisecond, LastAppliedAt: now.Add(-2 * time.Second),
			Position: replay.Position{AppliedEvents: applied1}},
		{Name: "replica-2", Reachable: true, Pending: 88120, Lag: 48200 * time.Millisecond, Conflicts: 2, LastAppliedAt: now.Add(-3 * time.Second),
			Position: replay.Position{AppliedEvents: applied2}, TableStates: map[string]copystate.State{"public.orders": copystate.Catchup}},
	}}
}

func sampleSnapshot() source.Snapshot {
	return source.Snapshot{Kind: "engine", Running: true, Started: now.Add(-2*time.Hour - 14*time.Minute), Replicas: []replay.ReplicaStatus{
		{Name: "replica-1", State: replay.Streaming, LastBatch: replay.BatchApplied{Events: 512, Took: 38 * time.Millisecond}},
		{Name: "replica-2", State: replay.Catchup, LastBatch: replay.BatchApplied{Events: 4096, Took: 912 * time.Millisecond}},
	}}
}

func sampleLogs() []logring.Record {
	base := now.Add(-10 * time.Second)
	rec := func(i int, lvl int, msg string, attrs ...string) logring.Record {
		r := logring.Record{Seq: uint64(i + 1), Time: base.Add(time.Duration(i) * 500 * time.Millisecond), Message: msg}
		r.Level = [...]slogLevel{-4, 0, 4, 8}[lvl]
		for j := 0; j+1 < len(attrs); j += 2 {
			r.Attrs = append(r.Attrs, logring.Attr{Key: attrs[j], Value: attrs[j+1]})
		}
		return r
	}
	return []logring.Record{
		rec(0, 1, "batch applied", "replica", "replica-1", "events", "512", "ms", "38"),
		rec(1, 1, "batch applied", "replica", "replica-2", "events", "4096", "ms", "912"),
		rec(2, 2, "slow batch", "replica", "replica-2", "events", "4096", "ms", "1210"),
		rec(3, 3, "conflict", "replica", "replica-2", "table", "public.orders", "key", `{"id":88121}`),
		rec(4, 0, "debug detail", "replica", "replica-1"),
		rec(5, 1, "batch applied", "replica", "replica-1", "events", "12", "ms", "3"),
		rec(6, 1, "batch applied", "replica", "replica-2", "events", "2048", "ms", "455"),
	}
}

func sampleConflicts() []conflicts.Conflict {
	return []conflicts.Conflict{
		{Replica: "replica-2", ID: 4, EventID: 9912231, Txid: "771203", Table: pg.Table{Schema: "public", Name: "orders"}, Op: "U",
			Key: `{"id": 88121}`, Data: `{"id": 88121, "status": "shipped", "total": 129.90}`, Kind: replay.UpdateNoRow, At: now.Add(-3 * time.Second)},
		{Replica: "replica-2", ID: 2, EventID: 9900012, Txid: "770001", Table: pg.Table{Schema: "public", Name: "customers"}, Op: "D",
			Key: `{"id": 9001}`, Kind: replay.DeleteNoRow, At: now.Add(-24 * time.Minute)},
	}
}

func (f *fixture) load() {
	f.send(
		tables.LoadedMsg{Tables: sampleTables(), At: now},
		conflicts.LoadedMsg{Conflicts: sampleConflicts()},
		screen.StatusMsg{Snap: sampleSnapshot()},
		screen.ReportMsg{Report: sampleReport(now.Add(-4*time.Second), 1000, 50000)},
		screen.ReportMsg{Report: sampleReport(now.Add(-2*time.Second), 4680, 57840)},
		screen.ReportMsg{Report: sampleReport(now, 8360, 65680)},
		screen.LogMsg{Records: sampleLogs()},
	)
}

var sizes = []struct {
	name string
	w, h int
}{{"80x24", 80, 24}, {"120x40", 120, 40}}

func TestScreensGolden(t *testing.T) {
	for _, sz := range sizes {
		for i, name := range []string{"tables", "monitor", "conflicts", "log"} {
			t.Run(name+"-"+sz.name, func(t *testing.T) {
				f := newFixture(false)
				f.send(tea.WindowSizeMsg{Width: sz.w, Height: sz.h})
				f.load()
				f.send(press(string(rune('1' + i))))
				golden(t, name+"-"+sz.name, f.root.Render())
			})
		}
	}
}

func TestHelpOverlayGolden(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"), press("?"))
	out := f.root.Render()
	golden(t, "help-tables-80x24", out)
	for _, want := range []string{"GLOBAL", "TABLES", "install capture…", "this help"} {
		if !strings.Contains(ansi.Strip(out), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	f.send(press("esc"))
	if strings.Contains(ansi.Strip(f.root.Render()), "GLOBAL") {
		t.Error("esc did not close the help")
	}
}

func TestReadOnlyHidesActions(t *testing.T) {
	f := newFixture(false)
	f.env.ReadOnly = true
	f.tab = tables.New(f.env, tables.Deps{})
	f.root.opt.Tabs[0].Screen = f.tab
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"))
	out := ansi.Strip(f.root.Render())
	if strings.Contains(out, "install capture") {
		t.Errorf("read-only footer offers install:\n%s", out)
	}
	f.send(press("j"), press("i"))
	if strings.Contains(ansi.Strip(f.root.Render()), "Install capture on") {
		t.Error("read-only: i opened a prompt")
	}
}

func TestTooSmall(t *testing.T) {
	f := newFixture(false)
	f.load()
	f.send(tea.WindowSizeMsg{Width: 62, Height: 16})
	out := f.root.Render()
	golden(t, "too-small-62x16", out)
	if !strings.Contains(out, "this window is 62x16") || len(strings.Split(out, "\n")) != 16 {
		t.Errorf("too-small screen:\n%s", out)
	}
	// Growing the window brings the screens back.
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	if strings.Contains(f.root.Render(), "needs 80x24") {
		t.Error("still too small at 80x24")
	}
}

func TestEveryFrameFitsTheWindow(t *testing.T) {
	for _, mono := range []bool{false, true} {
		for _, sz := range []struct{ w, h int }{{80, 24}, {100, 30}, {120, 40}, {200, 60}} {
			f := newFixture(mono)
			f.send(tea.WindowSizeMsg{Width: sz.w, Height: sz.h})
			f.load()
			for _, k := range []string{"1", "2", "3", "4", "?"} {
				f.send(press(k))
				lines := strings.Split(f.root.Render(), "\n")
				if len(lines) != sz.h {
					t.Errorf("%dx%d screen %s: %d lines", sz.w, sz.h, k, len(lines))
				}
				for i, l := range lines {
					if w := ansi.StringWidth(l); w > sz.w {
						t.Errorf("%dx%d screen %s line %d is %d wide: %q", sz.w, sz.h, k, i, w, ansi.Strip(l))
					}
				}
				if k == "?" {
					f.send(press("?"))
				}
			}
		}
	}
}

func TestMonochromeHasNoColour(t *testing.T) {
	f := newFixture(true)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("2"))
	out := f.root.Render()
	// SGR colour parameters 30-37, 90-97 (foreground) must not appear.
	for _, c := range []string{"[31m", "[32m", "[33m", "[34m", "[36m", "[90m", ";31m", ";32m", ";33m", ";90m"} {
		if strings.Contains(out, c) {
			t.Fatalf("monochrome output contains colour %q", c)
		}
	}
	if !strings.Contains(out, "STREAMING") || !strings.Contains(out, "CATCHUP") {
		t.Error("states are not written out as words")
	}
}

func TestEnterDoesNotConfirmRemove(t *testing.T) {
	removed := 0
	f := newFixture(false)
	f.tab = tables.New(f.env, tables.Deps{Remove: func(_ ctxT, _ pg.Table, _ func(string)) error { removed++; return nil }})
	f.root.opt.Tabs[0].Screen = f.tab
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"), press("s"), press("g")) // sort by name, top: public."Gift Cards"
	f.send(press("d"))
	if !strings.Contains(f.root.Render(), "Remove capture from") {
		t.Fatalf("d did not ask:\n%s", ansi.Strip(f.root.Render()))
	}
	golden(t, "tables-remove-prompt-80x24", f.root.Render())
	f.send(press("enter"))
	if removed != 0 {
		t.Fatal("enter alone confirmed a level-2 prompt")
	}
	if strings.Contains(f.root.Render(), "Remove capture from") {
		t.Fatal("enter did not cancel the prompt")
	}
	f.send(press("d"), press("y"))
	if removed != 1 {
		t.Fatalf("y did not confirm (removed %d)", removed)
	}
}

func TestTablesCursorKeepsRowIdentity(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"), press("s"), press("j"), press("j")) // by name: third row
	before := selectedLine(f.root.Render())
	// A refresh brings a new table that sorts first.
	more := append(sampleTables(), capture.TableInfo{Table: pg.Table{Schema: "public", Name: "aaa_new"}, Key: []string{"id"}, Status: capture.Missing})
	f.send(tables.LoadedMsg{Tables: more, At: now})
	after := selectedLine(f.root.Render())
	if before == "" || before != after {
		t.Errorf("cursor moved from %q to %q", before, after)
	}
}

func selectedLine(s string) string {
	for _, l := range strings.Split(ansi.Strip(s), "\n") {
		if strings.Contains(l, "▸") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func TestTablesFilterAndNoPK(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"), press("/"))
	f.root = typeText(f.root, "order").(*Model)
	f.send(press("enter"))
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(out, "orders_2019") || strings.Contains(out, "customers") {
		t.Errorf("filter: \n%s", out)
	}
	// q typed into the filter does not quit.
	f.send(press("/"), press("q"))
	if f.root.quitting {
		t.Fatal("q in the filter quit")
	}
	f.send(press("esc"))
	// NO PK rows explain themselves and refuse install.
	f.send(press("esc"), press("g"))
	for range 10 {
		if strings.Contains(selectedLine(f.root.Render()), "NO PK") {
			break
		}
		f.send(press("j"))
	}
	f.send(press("i"))
	out = ansi.Strip(f.root.Render())
	if !strings.Contains(out, "No primary key") || !strings.Contains(out, "has no primary key: add one first") {
		t.Errorf("no-PK detail/flash missing:\n%s", out)
	}
}

func TestTablesServerDown(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.send(press("1"), tables.LoadedMsg{Err: errors.New(`origin: connect to pgreplica@db1:5432/shop: dial tcp 127.0.0.1:5432: connect: connection refused`)})
	f.send(screen.ReportMsg{Err: errors.New("origin: connection refused")})
	golden(t, "tables-server-down-80x24", f.root.Render())
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(out, "cannot read the tables") || !strings.Contains(out, "Try:") {
		t.Errorf("server down:\n%s", out)
	}
	f.send(press("2"))
	if !strings.Contains(ansi.Strip(f.root.Render()), "connection refused") {
		t.Errorf("monitor does not show the error:\n%s", ansi.Strip(f.root.Render()))
	}
}

func TestLogPaneFollowPauseLevelSearch(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("4"))
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(out, "FOLLOW") || strings.Contains(out, "debug detail") {
		t.Fatalf("default pane:\n%s", out)
	}
	f.send(press("L"), press("L")) // ≥ ERROR
	out = ansi.Strip(f.root.Render())
	if strings.Contains(out, "batch applied") || !strings.Contains(out, "conflict") {
		t.Errorf("level ERROR:\n%s", out)
	}
	f.send(press("L"), press("L")) // DEBUG, then INFO
	f.send(press("L"))             // WARN
	f.send(press("L"), press("L")) // ERROR -> DEBUG
	if !strings.Contains(ansi.Strip(f.root.Render()), "debug detail") {
		t.Error("level DEBUG does not show debug records")
	}
	f.send(press("f"))
	f.send(screen.LogMsg{Records: []logring.Record{{Seq: 100, Time: now, Level: 0, Message: "late line"}}})
	out = ansi.Strip(f.root.Render())
	if !strings.Contains(out, "+1 new") {
		t.Errorf("no +N new while not following:\n%s", out)
	}
	f.send(press("/"))
	f.root = typeText(f.root, "slow").(*Model)
	f.send(press("enter"))
	out = ansi.Strip(f.root.Render())
	if !strings.Contains(out, "/slow") {
		t.Errorf("search not shown:\n%s", out)
	}
	f.send(press("p"))
	f.send(screen.LogMsg{Records: []logring.Record{{Seq: 101, Time: now, Level: 0, Message: "while paused"}}})
	if strings.Contains(ansi.Strip(f.root.Render()), "while paused") {
		t.Error("paused pane took new records")
	}
}

func TestQuitStopsEngineFirst(t *testing.T) {
	src := &stopRecorder{}
	f := newFixture(false)
	f.root.opt.Source = src
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.send(screen.StatusMsg{Snap: source.Snapshot{Kind: "engine", Running: true}})
	_, cmd := f.root.Update(press("q"))
	if cmd == nil {
		t.Fatal("q returned no command")
	}
	if msg := cmd(); msg != (quitNowMsg{}) || !src.stopped {
		t.Fatalf("quit: msg %T, engine stopped %v", msg, src.stopped)
	}
}

type stopRecorder struct {
	source.Static
	stopped bool
}

func (s *stopRecorder) Startable() bool { return true }
func (s *stopRecorder) Stop()           { s.stopped = true }
