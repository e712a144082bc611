// Package wizard is the install wizard: connect and check → backup with
// pg_dump → pick tables → install capture → initial copy → smoke test →
// start replication. Each step shows what it will do before doing it,
// runs with progress, can be cancelled where safe, and says what went wrong
// and how to fix it. Entering it resumes from the databases' actual state.
package wizard

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/tui/layout"
	"pgreplica/tui/screen"
)

// CopyProgress is one table's progress in the initial copy.
type CopyProgress struct {
	Replica         string
	Table           pg.Table
	Rows, TotalRows int64
	Bytes           int64
	Done            bool
}

// Deps are what the wizard needs beyond the config.
type Deps struct {
	// ConfigPath is where the config file is (or will be written).
	ConfigPath string
	// Copy is the online initial copy (core/tablecopy); nil when not
	// available.
	Copy func(ctx context.Context, cfg *config.Config, tables []pg.Table, progress func(CopyProgress)) error
	// Binary is this program, for the systemd unit's ExecStart.
	Binary string
	// BackupDir is where the backup file is proposed (default ".").
	BackupDir string
	// EngineLog receives the log of an engine the smoke test starts.
	EngineLog *slog.Logger
	// SmokeTimeout bounds each smoke test change (default 10s).
	SmokeTimeout time.Duration
	// ReplicaRows estimates the rows each replica holds in tables (per
	// replica name; a table the replica lacks is absent): what the copy
	// replaces, for its confirmation. nil: the confirmation cannot count.
	ReplicaRows func(ctx context.Context, cfg *config.Config, tables []pg.Table) (map[string]map[pg.Table]int64, error)
	// CreateTables creates on each replica the tables it lacks, from the
	// origin's definitions (the sync --schema path), reporting one line
	// per thing done. nil: the wizard cannot create them.
	CreateTables func(ctx context.Context, cfg *config.Config, tables []pg.Table, report func(string)) error
}

// The steps.
const (
	stepConnect = iota
	stepBackup
	stepPick
	stepInstall
	stepCopy
	stepSmoke
	stepStart
	nSteps
)

var stepNames = [nSteps]string{"Connect & check", "Backup (pg_dump)", "Pick tables", "Install capture", "Initial copy", "Smoke test", "Start replication"}

type stepState int

const (
	pending stepState = iota
	done
	failed
)

// Model is the wizard.
type Model struct {
	env  *screen.Env
	cfg  *config.Config
	deps Deps
	keys keys

	cur    int
	states [nSteps]stepState
	notes  [nSteps]string // shown in the step list tooltip / resume reason

	job      *job
	jobStart time.Time
	spin     int
	prompt   *screen.Prompt
	sqlView  bool
	sqlTop   int
	lastW    int
	// bodyTop scrolls a step body taller than the window (pgdn/pgup);
	// overflow says whether the last frame was.
	bodyTop  int
	overflow bool

	connect connectStep
	backup  backupStep
	pick    pickStep
	install installStep
	copy    copyStep
	smoke   smokeStep
	start   startStep
	resumed bool
	// lastFlash is the last flash text (for tests).
	lastFlash string
}

type keys struct {
	Next, Back, Rerun, Edit, ViewSQL, Skip, Create, Toggle, All, None, Filter, Up, Down key.Binding
}

func newKeys() keys {
	return keys{
		Next:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next / run")),
		Back:    key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back / cancel step")),
		Rerun:   key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "re-run")),
		Edit:    key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "edit DSNs")),
		ViewSQL: key.NewBinding(key.WithKeys("v"), key.WithHelp("v", "view SQL / unit")),
		Skip:    key.NewBinding(key.WithKeys("S"), key.WithHelp("S", "skip "+screen.Asks)),
		Create:  key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "create missing tables on the replicas "+screen.Asks)),
		Toggle:  key.NewBinding(key.WithKeys("space"), key.WithHelp("space", "toggle")),
		All:     key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "all")),
		None:    key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "none")),
		Filter:  key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Up:      key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/↓", "move")),
		Down:    key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓", "move")),
	}
}

// New makes the wizard for cfg (which it edits in place: the other
// screens share it). cfgErr is why no config could be loaded, if so.
func New(env *screen.Env, cfg *config.Config, deps Deps, cfgErr error) *Model {
	if deps.ConfigPath == "" {
		deps.ConfigPath = "pgreplica.yaml"
	}
	if deps.BackupDir == "" {
		deps.BackupDir = "."
	}
	m := &Model{env: env, cfg: cfg, deps: deps, keys: newKeys()}
	m.connect.init(cfg, cfgErr)
	m.start.choice = 0
	return m
}

// Busy is true while a step runs (ctrl+c cancels it first).
func (m *Model) Busy() bool { return m.job != nil }

// Capturing is true while an input, a prompt or the SQL view has the keys.
func (m *Model) Capturing() bool {
	return m.prompt != nil || m.sqlView || m.connect.editing || m.backup.editing || m.pick.filtering || m.job != nil
}

// Init checks the connections (when there is something to connect to),
// which also finds where the databases are: resume.
func (m *Model) Init() tea.Cmd {
	if m.connect.editing {
		return nil
	}
	return m.runChecks()
}

type spinMsg struct{}

func spinTick() tea.Cmd {
	return tea.Tick(120*time.Millisecond, func(time.Time) tea.Msg { return spinMsg{} })
}

// run starts a step's job.
func (m *Model) run(f func(ctx context.Context, emit func(any)) (any, error)) tea.Cmd {
	j, cmd := start(f)
	m.job, m.jobStart = j, time.Now()
	return tea.Batch(cmd, spinTick())
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (screen.Screen, tea.Cmd) {
	switch msg := msg.(type) {
	case spinMsg:
		if m.job != nil {
			m.spin++
			return m, spinTick()
		}
		return m, nil
	case jobEventMsg:
		if m.job == nil || msg.id != m.job.id {
			return m, nil
		}
		m.event(msg.event)
		return m, m.job.next()
	case jobDoneMsg:
		if m.job == nil || msg.id != m.job.id {
			return m, nil
		}
		m.job = nil
		return m, m.finished(msg.result, msg.err)
	case skipBackupMsg:
		m.backup.skipped, m.backup.editing = true, false
		m.states[stepBackup] = done
		m.env.Audit("wizard: backup skipped (typed confirmation)")
		return m, screen.Flash(screen.Warning, "backup skipped: you confirmed a backup of your own")
	case skipCopyMsg:
		m.copy.skipped = true
		m.states[stepCopy] = done
		m.env.Audit("wizard: initial copy skipped (typed confirmation)")
		return m, screen.Flash(screen.Warning, "initial copy skipped")
	case runInstallMsg:
		return m, m.startInstall()
	case runCopyMsg:
		return m, m.startCopy()
	case runSmokeMsg:
		return m, m.startSmoke()
	case runCreateMsg:
		return m, m.startCreate()
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m *Model) key(msg tea.KeyPressMsg) (screen.Screen, tea.Cmd) {
	if m.prompt != nil {
		return m, screen.KeyToPrompt(&m.prompt, msg)
	}
	if m.job != nil {
		if msg.String() == "esc" || msg.String() == "ctrl+c" {
			if m.cur == stepInstall {
				return m, screen.Flash(screen.Warning, "the install cannot be interrupted safely (one short transaction per table); wait for it")
			}
			m.job.cancel()
			return m, screen.Flash(screen.Info, "cancelling "+strings.ToLower(stepNames[m.cur])+"…")
		}
		return m, nil
	}
	if m.sqlView {
		switch msg.String() {
		case "esc", "v", "q":
			m.sqlView = false
		case "j", "down":
			m.sqlTop++
		case "k", "up":
			m.sqlTop = max(m.sqlTop-1, 0)
		case "ctrl+d", "pgdown", "space":
			m.sqlTop += 10
		case "ctrl+u", "pgup":
			m.sqlTop = max(m.sqlTop-10, 0)
		case "g":
			m.sqlTop = 0
		}
		return m, nil
	}
	if m.overflow {
		switch msg.String() {
		case "pgdown", "ctrl+f":
			m.bodyTop += 5
			return m, nil
		case "pgup", "ctrl+b":
			m.bodyTop = max(m.bodyTop-5, 0)
			return m, nil
		}
	}
	switch m.cur {
	case stepConnect:
		return m, m.connectKey(msg)
	case stepBackup:
		return m, m.backupKey(msg)
	case stepPick:
		return m, m.pickKey(msg)
	case stepInstall:
		return m, m.installKey(msg)
	case stepCopy:
		return m, m.copyKey(msg)
	case stepSmoke:
		return m, m.smokeKey(msg)
	case stepStart:
		return m, m.startKey(msg)
	}
	return m, nil
}

// back goes to the previous step.
func (m *Model) back() tea.Cmd {
	if m.cur > 0 {
		m.cur--
		return m.enter()
	}
	return nil
}

// next marks the current step done and enters the next one.
func (m *Model) next() tea.Cmd {
	m.states[m.cur] = done
	if m.cur < nSteps-1 {
		m.cur++
	}
	return m.enter()
}

// enter prepares the current step.
func (m *Model) enter() tea.Cmd {
	m.bodyTop = 0
	switch m.cur {
	case stepBackup:
		m.backup.prepare(m)
	case stepPick:
		if m.pick.rows == nil || m.states[stepPick] != done {
			return m.loadTables()
		}
	case stepCopy:
		m.copy.prepare(m)
	}
	return nil
}

func (m *Model) event(ev any) {
	switch m.cur {
	case stepBackup:
		m.backup.event(ev)
	case stepPick:
		if s, ok := ev.(string); ok {
			m.pick.createLines = append(m.pick.createLines, s)
		}
	case stepInstall:
		if s, ok := ev.(string); ok {
			m.install.lines = append(m.install.lines, s)
		}
	case stepCopy:
		m.copy.event(ev)
	case stepSmoke:
		m.smoke.event(ev)
	}
}

func (m *Model) finished(res any, err error) tea.Cmd {
	switch r := res.(type) {
	case checkResult:
		return m.checked(r)
	case tablesResult:
		return m.tablesLoaded(r, err)
	case replicaRowsResult:
		return m.askCopy(r, err)
	case createdResult:
		return m.tablesCreated(err)
	}
	switch m.cur {
	case stepBackup:
		return m.backupDone(err)
	case stepInstall:
		return m.installDone(err)
	case stepCopy:
		return m.copyDone(err)
	case stepSmoke:
		return m.smokeDone(res, err)
	}
	return nil
}

// View renders the step list and the current step's panel.
func (m *Model) View(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	m.lastW = w
	left := []string{t.Title.Render("  STEPS")}
	for i, name := range stepNames {
		mark := " "
		switch {
		case i == m.cur && m.states[i] == failed:
			mark = t.Err.Render(g.Cross)
		case i == m.cur:
			mark = g.Cursor
		case m.states[i] == done:
			mark = t.OK.Render(g.Check)
		case m.states[i] == failed:
			mark = t.Err.Render(g.Cross)
		}
		line := fmt.Sprintf(" %s %d %s", mark, i+1, name)
		if i == m.cur {
			line = t.Title.Render(line)
		}
		left = append(left, line)
	}
	left = append(left, "", t.Dim.Render(fmt.Sprintf("  step %d of %d", m.cur+1, nSteps)))
	pw := w - layout.StepListWidth - 2
	var panel string
	if m.sqlView {
		panel = m.sqlPanel(pw, h)
	} else {
		title := t.Title.Render(fmt.Sprintf("%d · %s", m.cur+1, stepNames[m.cur]))
		if m.job != nil {
			title += "   " + t.Warn.Render(g.Spinner[m.spin%len(g.Spinner)]) + " " + screen.Clock(time.Since(m.jobStart))
		}
		panel = title + "\n\n" + m.scrolled(m.stepView(pw, h-2), pw, h-2)
	}
	pl := strings.Split(screen.Block(panel, pw, h), "\n")
	ll := strings.Split(screen.Block(strings.Join(left, "\n"), layout.StepListWidth, h), "\n")
	out := make([]string, h)
	for i := range out {
		out[i] = ll[i] + t.Rule.Render(g.VRule) + " " + pl[i]
	}
	body := strings.Join(out, "\n")
	if m.prompt != nil {
		return screen.Overlay(body, m.prompt.View(t, w-6), w, h)
	}
	return body
}

// scrolled fits a step body into h lines: a taller one shows from bodyTop
// with a last line saying how to see the rest, so no hint is out of reach.
func (m *Model) scrolled(body string, w, h int) string {
	lines := strings.Split(body, "\n")
	if len(lines) <= h || h < 3 {
		m.overflow, m.bodyTop = false, 0
		return body
	}
	m.overflow = true
	page := h - 1
	m.bodyTop = min(m.bodyTop, len(lines)-page)
	end := m.bodyTop + page
	out := append([]string(nil), lines[m.bodyTop:end]...)
	more := fmt.Sprintf("lines %d-%d of %d · pgdn/pgup (ctrl+f/b) scroll", m.bodyTop+1, end, len(lines))
	if end < len(lines) {
		more = "↓ " + more
	}
	out = append(out, m.env.Theme.Dim.Render(screen.Fit(more, w)))
	return strings.Join(out, "\n")
}

func (m *Model) stepView(w, h int) string {
	switch m.cur {
	case stepConnect:
		return m.connectView(w, h)
	case stepBackup:
		return m.backupView(w, h)
	case stepPick:
		return m.pickView(w, h)
	case stepInstall:
		return m.installView(w, h)
	case stepCopy:
		return m.copyView(w, h)
	case stepSmoke:
		return m.smokeView(w, h)
	case stepStart:
		return m.startView(w, h)
	}
	return ""
}

func (m *Model) sqlPanel(w, h int) string {
	t := m.env.Theme
	text, title := originSQL, "SQL run on the origin by step 4 (j/k scroll · esc close)"
	if m.cur == stepStart {
		text, title = Unit(m.deps.Binary, m.absConfig()), "systemd unit (esc close)"
	}
	lines := strings.Split(text, "\n")
	m.sqlTop = min(m.sqlTop, max(len(lines)-(h-2), 0))
	out := []string{t.Title.Render(title), ""}
	for i := m.sqlTop; i < len(lines) && len(out) < h; i++ {
		out = append(out, strings.ReplaceAll(lines[i], "\t", "    "))
	}
	return strings.Join(out, "\n")
}

// ShortHelp is the footer for the current step.
func (m *Model) ShortHelp() []key.Binding {
	k := m.keys
	switch {
	case m.prompt != nil:
		return []key.Binding{key.NewBinding(key.WithKeys("y"), key.WithHelp(m.prompt.Footer(), ""))}
	case m.job != nil:
		return []key.Binding{withHelp(k.Back, "esc", "cancel step")}
	case m.sqlView:
		return []key.Binding{withHelp(k.Up, "j/k", "scroll"), withHelp(k.Back, "esc", "close")}
	}
	switch m.cur {
	case stepConnect:
		if m.connect.editing {
			return []key.Binding{withHelp(k.Next, "tab", "next field"), withHelp(k.Next, "enter", "save + check"), withHelp(k.Next, "ctrl+n", "add replica"), withHelp(k.Back, "esc", "cancel")}
		}
		return []key.Binding{m.nextHelp(), k.Rerun, k.Edit}
	case stepBackup:
		if m.backup.editing {
			return []key.Binding{withHelp(k.Next, "enter", "run pg_dump"), withHelp(k.Back, "esc", "back"), k.Skip}
		}
		return []key.Binding{m.nextHelp(), withHelp(k.Edit, "e", "file name"), k.Skip, k.Back}
	case stepPick:
		keys := []key.Binding{withHelp(k.Next, "enter", "confirm"), k.Toggle}
		if m.pick.missing() > 0 && m.deps.CreateTables != nil {
			keys = append(keys, withHelp(k.Create, "c", "create missing "+screen.Asks))
		}
		return append(keys, k.All, k.None, k.Filter, k.Back)
	case stepInstall:
		return []key.Binding{m.nextHelp(), k.ViewSQL, k.Back}
	case stepCopy:
		return []key.Binding{m.nextHelp(), k.Skip, k.Back}
	case stepSmoke:
		return []key.Binding{m.nextHelp(), withHelp(k.Rerun, "r", "run again "+screen.Asks), k.Back}
	case stepStart:
		return []key.Binding{k.Up, withHelp(k.Next, "enter", "run"), withHelp(k.ViewSQL, "v", "view unit"), k.Back}
	}
	return nil
}

func (m *Model) nextHelp() key.Binding {
	if m.states[m.cur] == done {
		return withHelp(m.keys.Next, "enter", "next")
	}
	return withHelp(m.keys.Next, "enter", "run "+screen.Asks)
}

func withHelp(b key.Binding, k, desc string) key.Binding {
	b.SetHelp(k, desc)
	return b
}

// Help is the overlay's part.
func (m *Model) Help() []screen.HelpGroup {
	k := m.keys
	return []screen.HelpGroup{
		{Title: "WIZARD", Keys: []key.Binding{k.Next, k.Back, k.Rerun, k.Edit, k.ViewSQL, k.Skip}},
		{Title: "PICK TABLES", Keys: []key.Binding{k.Up, k.Toggle, k.All, k.None, k.Filter, k.Create}},
		{Title: "FORMS AND SCROLLING", Keys: []key.Binding{
			key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab/↓", "next field (shift+tab/↑ back)")),
			key.NewBinding(key.WithKeys("ctrl+n"), key.WithHelp("ctrl+n", "add a replica (step 1)")),
			key.NewBinding(key.WithKeys("ctrl+x"), key.WithHelp("ctrl+x", "remove the focused replica")),
			key.NewBinding(key.WithKeys("ctrl+u"), key.WithHelp("ctrl+u", "clear the field")),
			key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn/pgup", "scroll a step taller than the window (ctrl+f/b)")),
		}},
	}
}

func (m *Model) absConfig() string { return absPath(m.deps.ConfigPath) }
