package tui

import (
	"errors"
	"flag"
	"fmt"
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
	cfg.Tables.Exclude = []string{"public.audit_*"}
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
		{Table: tb("public", "audit_2025"), Key: []string{"id"}, Status: capture.Missing},
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
}{{"80x24", 80, 24}, {"80x23", 80, 23}, {"120x40", 120, 40}}

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
	f.send(tea.WindowSizeMsg{Width: 80, Height: 23})
	f.load()
	f.send(press("2"), press("?"))
	golden(t, "help-monitor-80x23", f.root.Render())
	f.send(press("esc"), tea.WindowSizeMsg{Width: 80, Height: 24})
	f.send(press("1"), press("?"))
	out := f.root.Render()
	golden(t, "help-tables-80x24", out)
	for _, want := range []string{"GLOBAL", "TABLES", "install capture (asks)", "this help"} {
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
	f.send(tea.WindowSizeMsg{Width: 56, Height: 14})
	out := f.root.Render()
	golden(t, "too-small-56x14", out)
	if !strings.Contains(out, "this window is 56x14") || len(strings.Split(out, "\n")) != 14 {
		t.Errorf("too-small screen:\n%s", out)
	}
	// 80x23 (tmux in an 80x24 terminal) and a little below are screens,
	// not the refusal.
	for _, sz := range [][2]int{{80, 23}, {72, 20}, {80, 24}} {
		f.send(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		if out := ansi.Strip(f.root.Render()); strings.Contains(out, "needs at least") || !strings.Contains(out, "1 Tables") {
			t.Errorf("%dx%d is refused:\n%s", sz[0], sz[1], out)
		}
	}
}

func TestEveryFrameFitsTheWindow(t *testing.T) {
	for _, mono := range []bool{false, true} {
		for _, sz := range []struct{ w, h int }{{80, 24}, {80, 23}, {66, 18}, {100, 30}, {120, 40}, {200, 60}} {
			f := newFixture(mono)
			f.send(tea.WindowSizeMsg{Width: sz.w, Height: sz.h})
			f.load()
			for _, k := range []string{"1", "2", "3", "4", "?", "enter"} {
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
				if k == "?" || k == "enter" {
					f.send(press("esc"))
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
	// q asks first: the engine runs here, quitting stops replication.
	f.send(press("q"))
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(out, "Quit and stop replication?") || f.root.quitting {
		t.Fatalf("q did not ask:\n%s", out)
	}
	golden(t, "quit-prompt-80x24", f.root.Render())
	f.send(press("enter"))
	if f.root.quitting || src.stopped || f.root.prompt != nil {
		t.Fatal("enter alone confirmed quitting")
	}
	f.send(press("q"))
	_, cmd := f.root.Update(press("y"))
	if cmd == nil {
		t.Fatal("y returned no command")
	}
	if msg := cmd(); msg != (quitConfirmedMsg{}) {
		t.Fatalf("y: msg %T", msg)
	}
	_, cmd = f.root.Update(quitConfirmedMsg{})
	if msg := cmd(); msg != (quitNowMsg{}) || !src.stopped {
		t.Fatalf("quit: msg %T, engine stopped %v", msg, src.stopped)
	}
	if x := f.root.ExitText(); !strings.Contains(x, "replication stopped") || !strings.Contains(x, "run --daemon") {
		t.Fatalf("exit text: %q", x)
	}
}

func TestQuitWithoutEngineHereDoesNotAsk(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	_, cmd := f.root.Update(press("q"))
	if f.root.prompt != nil || cmd == nil {
		t.Fatal("q asked although no engine runs here")
	}
}

func TestEngineStopAsks(t *testing.T) {
	src := &stopRecorder{}
	f := newFixture(false)
	f.root.opt.Source = src
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(screen.StatusMsg{Snap: sampleSnapshot()}, press("2"), press("S"))
	if out := ansi.Strip(f.root.Render()); !strings.Contains(out, "Stop replication?") {
		t.Fatalf("S did not ask:\n%s", out)
	}
	f.send(press("enter"))
	if src.stopped || f.root.prompt != nil {
		t.Fatal("enter alone stopped the engine, or left the prompt open")
	}
	f.send(press("S"), press("y"))
	if !src.stopped {
		t.Fatal("y did not stop the engine")
	}
}

func TestRateAfterCounterResetIsNoSpike(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	at := now.Add(-time.Minute)
	rep := func(sec int, applied int64, reachable bool) screen.ReportMsg {
		r := sampleReport(at.Add(time.Duration(sec)*time.Second), applied, 0)
		r.Replicas[0].Reachable = reachable
		if !reachable {
			r.Replicas[0].Position = replay.Position{}
		}
		return screen.ReportMsg{Report: r}
	}
	f.send(rep(0, 100_000, true), rep(2, 100_200, true))
	if r, _ := f.mon.RateOf("replica-1"); r != 100 {
		t.Fatalf("steady rate %v, want 100", r)
	}
	// Unreachable (the counter reads 0), then back: no 50,000/s spike.
	f.send(rep(4, 0, false), rep(6, 100_400, true), rep(8, 100_600, true))
	if r, _ := f.mon.RateOf("replica-1"); r != 100 {
		t.Fatalf("rate after the outage %v, want 100", r)
	}
	// A counter that goes back (re-copy) is no negative or huge rate.
	f.send(rep(10, 5, true))
	if r, _ := f.mon.RateOf("replica-1"); r != 0 {
		t.Fatalf("rate after a counter reset %v, want 0", r)
	}
	f.send(rep(12, 205, true))
	if r, _ := f.mon.RateOf("replica-1"); r != 100 {
		t.Fatalf("rate after the reset %v, want 100", r)
	}
}

// stoppedFixture has replica-2 stopped by a duplicate key, with the whole
// error (longer than any line).
func stoppedFixture(h int) *fixture {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: h})
	f.load()
	snap := sampleSnapshot()
	snap.Replicas[1].State = replay.Stopped
	snap.Replicas[1].Err = longError
	rep := sampleReport(now, 8360, 65680)
	rep.Replicas[1].LastAppliedAt = now.Add(-3*time.Minute - 12*time.Second)
	f.send(screen.StatusMsg{Snap: snap}, screen.ReportMsg{Report: rep}, press("2"), press("j"))
	return f
}

const longError = `apply event 4 to public.inventory: INSERT into public.inventory (event 4): ERROR: duplicate key value violates unique constraint "inventory_pkey" (SQLSTATE 23505): Key (sku)=(A-1001) already exists on the replica. Try: remove it there or resync the table (pgreplica -c shop.yaml sync public.inventory --replica replica-2)`

func TestStoppedReplicaLongError(t *testing.T) {
	for _, h := range []int{24, 23} {
		f := stoppedFixture(h)
		name := fmt.Sprintf("monitor-stopped-80x%d", h)
		out := ansi.Strip(f.root.Render())
		golden(t, name, f.root.Render())
		head := strings.SplitN(out, "\n", 2)[0]
		if strings.Contains(head, "max lag") || !strings.Contains(head, "replica-2 STOPPED") || !strings.Contains(head, "applied 3m12s ago") {
			t.Errorf("header hides the stopped replica: %q", head)
		}
		// The banner wraps: the advice at the end is on screen.
		if !strings.Contains(squash(out), "already exists on the replica") {
			t.Errorf("the error banner is cut:\n%s", out)
		}
		f.send(press("enter"))
		out = ansi.Strip(f.root.Render())
		golden(t, name+"-detail", f.root.Render())
		if !strings.Contains(squash(out), squash(longError)) {
			t.Errorf("the detail view does not show the whole error:\n%s", out)
		}
		f.send(press("esc"))
		if strings.Contains(ansi.Strip(f.root.Render()), "─ replica replica-2 ─") {
			t.Error("esc did not close the detail view")
		}
	}
}

// squash joins wrapped lines: the text without the frame's line breaks
// and padding.
func squash(s string) string {
	var words []string
	for _, l := range strings.Split(s, "\n") {
		words = append(words, strings.Fields(strings.Trim(l, "│ "))...)
	}
	return strings.Join(words, " ")
}

func TestTablesShowsWhatIsNotReplicated(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"), press("G"))
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(selectedLine(f.root.Render()), "EXCLUDED   public.audit_2025") || !strings.Contains(out, "1 excluded") ||
		!strings.Contains(squash(out), `Not replicated: tables.exclude "public.audit_*" drops it`) {
		t.Errorf("the excluded table is not listed last with why:\n%s", out)
	}
	f.send(press("i"))
	if f.root.Render(); f.tab.Capturing() {
		t.Error("i on an excluded table opened a prompt")
	}
}

func TestDetailViews(t *testing.T) {
	cases := []struct{ tab, want string }{
		{"1", "table public.invoices"},
		{"3", "conflict 4 on replica-2"},
		{"4", "log record 7"},
	}
	for _, c := range cases {
		f := newFixture(false)
		f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
		f.load()
		f.send(press(c.tab), press("enter"))
		out := ansi.Strip(f.root.Render())
		if !strings.Contains(out, c.want) {
			t.Errorf("tab %s enter: no %q\n%s", c.tab, c.want, out)
		}
		golden(t, "detail-"+strings.Fields(c.want)[0]+"-80x24", f.root.Render())
	}
}

func TestLogWrapSearchAndHidden(t *testing.T) {
	f := newFixture(false)
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	long := logring.Record{Seq: 50, Time: now, Level: 0, Message: "batch applied",
		Attrs: []logring.Attr{{Key: "replica", Value: "replica-1"}, {Key: "events", Value: "512"}, {Key: "first_event", Value: "1000"}, {Key: "last_event", Value: "1511"}, {Key: "ms", Value: "38"}, {Key: "tail_marker", Value: "zz-end"}}}
	f.send(screen.LogMsg{Records: []logring.Record{long}}, press("4"))
	if strings.Contains(ansi.Strip(f.root.Render()), "zz-end") {
		t.Fatal("the long line is not cut without wrap (test premise)")
	}
	f.send(press("w"))
	out := ansi.Strip(f.root.Render())
	if !strings.Contains(out, "zz-end") || !strings.Contains(out, "wrap") {
		t.Errorf("w does not wrap:\n%s", out)
	}
	f.send(press("w"), press("/"))
	f.root = typeText(f.root, "zz-end").(*Model)
	f.send(press("enter"))
	if out := ansi.Strip(f.root.Render()); !strings.Contains(out, "zz-end") {
		t.Errorf("the search match is not on screen:\n%s", out)
	}
	// Level ≥ ERROR hides the others and says how many.
	f.send(press("esc"), press("L"), press("L"))
	out = ansi.Strip(f.root.Render())
	if !strings.Contains(out, "7 hidden") {
		t.Errorf("the pane does not count what the level hides:\n%s", out)
	}
}

func TestKeyLineFitsAndHelpHasEveryKey(t *testing.T) {
	for _, h := range []int{24, 23} {
		f := newFixture(false)
		f.send(tea.WindowSizeMsg{Width: 80, Height: h})
		f.load()
		for _, tab := range []string{"1", "2", "3", "4"} {
			f.send(press(tab))
			lines := strings.Split(ansi.Strip(f.root.Render()), "\n")
			last := lines[len(lines)-1]
			if strings.Contains(last, "…") || !strings.Contains(last, "? ") {
				t.Errorf("tab %s key line is cut or has no ?: %q", tab, last)
			}
			cur := f.root.current()
			f.send(press("?"))
			var all string
			for range 10 { // scroll through the whole help
				all += ansi.Strip(f.root.Render())
				f.send(press("j"), press("j"), press("j"), press("j"), press("j"))
			}
			for _, g := range cur.Help() {
				for _, b := range g.Keys {
					if b.Enabled() && !strings.Contains(squash(all), b.Help().Desc) {
						t.Errorf("tab %s help lacks %q", tab, b.Help().Desc)
					}
				}
			}
			if strings.Contains(all, "…") {
				t.Errorf("tab %s help cuts text:\n%s", tab, all)
			}
			f.send(press("esc"))
		}
	}
}

type stopRecorder struct {
	source.Static
	stopped bool
}

func (s *stopRecorder) Startable() bool { return true }
func (s *stopRecorder) Stop()           { s.stopped = true }

// TestDestructiveKeysAsk: every key that writes to a database or stops
// replication opens a confirmation; enter alone does not confirm it.
func TestDestructiveKeysAsk(t *testing.T) {
	cases := []struct {
		name  string
		keys  []string // to reach the row, then the key
		title string
	}{
		{"install capture", []string{"1", "g", "i"}, "Install capture on public.invoices?"},
		{"remove capture", []string{"1", "s", "g", "d"}, `Remove capture from public."Gift Cards"?`},
		{"stop the engine", []string{"2", "S"}, "Stop replication?"},
		{"quit with the engine here", []string{"2", "q"}, "Quit and stop replication?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			count := func(_ ctxT, _ pg.Table, _ func(string)) error { calls++; return nil }
			src := &stopRecorder{}
			f := newFixture(false)
			f.tab = tables.New(f.env, tables.Deps{Install: count, Remove: count})
			f.root.opt.Tabs[0].Screen = f.tab
			f.root.opt.Source = src
			f.send(tea.WindowSizeMsg{Width: 80, Height: 23})
			f.load()
			for _, k := range c.keys {
				f.send(press(k))
			}
			if out := ansi.Strip(f.root.Render()); !strings.Contains(out, c.title) {
				t.Fatalf("%v did not ask %q:\n%s", c.keys, c.title, out)
			}
			f.send(press("enter"))
			if calls != 0 || src.stopped || f.root.quitting {
				t.Fatalf("enter alone confirmed %s", c.name)
			}
			if out := ansi.Strip(f.root.Render()); strings.Contains(out, c.title) {
				t.Fatalf("enter did not close the confirmation:\n%s", out)
			}
		})
	}
}

// TestTablesShowRules: a table a replica has a rule for carries the ƒ
// marker at 80x24, and its detail says the rule per replica.
func TestTablesShowRules(t *testing.T) {
	f := newFixture(true)
	f.env.Config.Replicas[1].Tables = []config.TableRule{{Table: "public.customers", Where: "region = 'eu'",
		Columns: config.Columns{Exclude: []string{"ssn"}}}}
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("1"))
	out := ansi.Strip(f.root.Render())
	var marked []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " ƒ ") {
			marked = append(marked, l)
		}
	}
	if len(marked) != 1 || !strings.Contains(marked[0], "public.customers") {
		t.Fatalf("want one marked row, public.customers; got %q in\n%s", marked, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if w := ansi.StringWidth(l); w > 80 {
			t.Errorf("line wider than 80 (%d): %q", w, l)
		}
	}
	title, text, ok := f.tab.Detail()
	for i := 0; i < 10 && title != "table public.customers"; i++ {
		f.send(press("j"))
		title, text, ok = f.tab.Detail()
	}
	if !ok || !strings.Contains(strings.Join(text, "\n"), "rule        replica-2: where region = 'eu'; without ssn") {
		t.Errorf("detail lacks the rule: %q", text)
	}
}
