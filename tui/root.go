// Package tui is pgreplica's terminal UI: the root model owns the window
// size, the chrome (header, tabs, flash and help lines), the help overlay
// and the polling of live state; the screens live in subpackages.
package tui

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/core/config"
	"pgreplica/core/replay"
	"pgreplica/tui/layout"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
)

// Tab is one screen reachable with its number key.
type Tab struct {
	Name   string
	Screen screen.Screen
	// Badge is shown after the name, e.g. the number of conflicts.
	Badge func() string
}

// Options configure the root model.
type Options struct {
	Env     *screen.Env
	Source  source.Source
	Version string
	Tabs    []Tab
	// Wizard, when set, is shown first, with its own step list instead of
	// the tabs; when it finishes the tabs are shown (Monitor selected).
	Wizard screen.Screen
	// Report reads replication status from the databases (QueryStatus);
	// nil disables it.
	Report func(ctx context.Context) (replay.Report, error)
	// Live turns on the ticks that poll the source and the databases;
	// golden tests leave it off and feed messages themselves.
	Live bool
	// Monitor is the index of the monitor tab (shown after the wizard).
	Monitor int
}

// Model is the root model.
type Model struct {
	opt    Options
	env    *screen.Env
	lay    layout.Layout
	active int
	wizard bool
	help   bool

	flash      string
	flashLevel screen.Level
	flashUntil time.Time

	snap      source.Snapshot
	snapErr   error
	report    replay.Report
	reportErr error
	haveRep   bool
	inReport  bool
	lastSeq   uint64
	quitting  bool
	exitText  string
	inLogs    bool

	startEngine bool
}

// Global keys.
var (
	keyQuit   = key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit"))
	keyCtrlC  = key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit (stops step)"))
	keyHelp   = key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "this help"))
	keyNext   = key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next screen"))
	keyPrev   = key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous screen"))
	keyScreen = key.NewBinding(key.WithKeys("1", "2", "3", "4"), key.WithHelp("1-4", "go to screen"))
	keyEsc    = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back/close/cancel"))
)

// New makes the root model.
func New(opt Options) *Model {
	m := &Model{opt: opt, env: opt.Env, wizard: opt.Wizard != nil}
	if opt.Source == nil {
		m.opt.Source = &source.Static{Snap: source.Snapshot{Kind: "none"}}
	}
	return m
}

// ExitText is what to print after the program ends (e.g. the command to
// run the daemon).
func (m *Model) ExitText() string { return m.exitText }

type tickMsg time.Time
type logTickMsg time.Time
type quitNowMsg struct{}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func logTick(d time.Duration) tea.Cmd {
	return tea.Tick(d, func(t time.Time) tea.Msg { return logTickMsg(t) })
}

func (m *Model) logInterval() time.Duration {
	if m.opt.Source.Kind() == "daemon" {
		return 250 * time.Millisecond
	}
	return 100 * time.Millisecond // at most 10 refreshes a second
}

// Init starts the screens and the ticks.
func (m *Model) Init() tea.Cmd {
	var cmds []tea.Cmd
	if m.opt.Wizard != nil {
		cmds = append(cmds, m.opt.Wizard.Init())
	}
	for _, t := range m.opt.Tabs {
		cmds = append(cmds, t.Screen.Init())
	}
	if m.opt.Live {
		cmds = append(cmds, tick(), logTick(m.logInterval()), m.pollSnapshot(), m.pollReport())
	}
	if m.startEngine {
		cmds = append(cmds, func() tea.Msg { return screen.EngineMsg{Start: true} })
	}
	return tea.Batch(cmds...)
}

func (m *Model) pollSnapshot() tea.Cmd {
	src := m.opt.Source
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := src.Snapshot(ctx)
		return screen.StatusMsg{Snap: s, Err: err}
	}
}

func (m *Model) pollReport() tea.Cmd {
	if m.opt.Report == nil || m.inReport {
		return nil
	}
	m.inReport = true
	f := m.opt.Report
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := f(ctx)
		return screen.ReportMsg{Report: r, Err: err}
	}
}

func (m *Model) pollLogs() tea.Cmd {
	if m.inLogs {
		return nil
	}
	m.inLogs = true
	src, since := m.opt.Source, m.lastSeq
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
		defer cancel()
		recs, _ := src.Logs(ctx, since)
		return screen.LogMsg{Records: recs}
	}
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.lay = layout.Compute(msg.Width, msg.Height)
		return m, nil
	case tickMsg:
		cmds := []tea.Cmd{tick(), m.pollSnapshot(), m.broadcast(screen.TickMsg{At: time.Time(msg)})}
		if time.Time(msg).Unix()%2 == 0 {
			cmds = append(cmds, m.pollReport())
		}
		return m, tea.Batch(cmds...)
	case logTickMsg:
		return m, tea.Batch(logTick(m.logInterval()), m.pollLogs())
	case screen.LogMsg:
		m.inLogs = false
		if len(msg.Records) == 0 {
			return m, nil
		}
		m.lastSeq = msg.Records[len(msg.Records)-1].Seq
		return m, m.broadcast(msg)
	case screen.StatusMsg:
		m.snap, m.snapErr = msg.Snap, msg.Err
		return m, m.broadcast(msg)
	case screen.ReportMsg:
		m.inReport = false
		m.report, m.reportErr, m.haveRep = msg.Report, msg.Err, true
		return m, m.broadcast(msg)
	case screen.FlashMsg:
		m.flash, m.flashLevel = msg.Text, msg.Level
		m.flashUntil = m.now().Add(5 * time.Second)
		return m, nil
	case screen.SwitchMsg:
		if msg.Index >= 0 && msg.Index < len(m.opt.Tabs) {
			m.active = msg.Index
		}
		return m, nil
	case screen.EngineMsg:
		return m, m.engine(msg.Start)
	case screen.WizardDoneMsg:
		m.wizard = false
		m.active = m.opt.Monitor
		if msg.StartEngine {
			return m, m.engine(true)
		}
		return m, nil
	case screen.QuitMsg:
		m.exitText = msg.Message
		return m, m.quit()
	case quitNowMsg:
		return m, tea.Quit
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	// Anything else (results of commands) goes to every screen: each
	// ignores what is not its own.
	return m, m.broadcast(msg)
}

func (m *Model) engine(start bool) tea.Cmd {
	src, env := m.opt.Source, m.env
	if !src.Startable() {
		return screen.Flash(screen.Warning, "the engine runs in the daemon: start or stop it with systemctl")
	}
	if start {
		if err := src.Start(); err != nil {
			return screen.Flash(screen.Bad, "start engine: "+err.Error())
		}
		env.Audit("engine started from the TUI")
		return tea.Batch(screen.Flash(screen.Good, "engine started in this process"), m.pollSnapshot())
	}
	env.Audit("engine stopped from the TUI")
	return tea.Sequence(screen.Flash(screen.Info, "stopping the engine after the batch in flight…"),
		func() tea.Msg { src.Stop(); return screen.FlashMsg{Text: "engine stopped", Level: screen.Info} },
		m.pollSnapshot())
}

// quit stops the engine run here (after the batch in flight), then quits.
func (m *Model) quit() tea.Cmd {
	if m.quitting {
		return tea.Quit // second request: do not wait
	}
	m.quitting = true
	src := m.opt.Source
	if src.Startable() && m.snap.Running {
		m.flash, m.flashLevel, m.flashUntil = "stopping the engine after the batch in flight…", screen.Info, m.now().Add(time.Minute)
	}
	return func() tea.Msg { src.Stop(); return quitNowMsg{} }
}

func (m *Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	cur := m.current()
	if msg.String() == "ctrl+c" {
		if c, ok := cur.(interface{ Busy() bool }); ok && c.Busy() {
			return m, m.send(cur, msg) // cancels the running step first
		}
		return m, m.quit()
	}
	if m.lay.TooSmall {
		if key.Matches(msg, keyQuit) {
			return m, m.quit()
		}
		return m, nil
	}
	if m.help {
		if key.Matches(msg, keyHelp, keyEsc) {
			m.help = false
		} else if key.Matches(msg, keyQuit) {
			return m, m.quit()
		}
		return m, nil
	}
	if cur != nil && cur.Capturing() {
		return m, m.send(cur, msg)
	}
	switch {
	case key.Matches(msg, keyQuit):
		return m, m.quit()
	case key.Matches(msg, keyHelp):
		m.help = true
		return m, nil
	}
	if !m.wizard && len(m.opt.Tabs) > 0 {
		switch {
		case key.Matches(msg, keyNext):
			m.active = (m.active + 1) % len(m.opt.Tabs)
			return m, nil
		case key.Matches(msg, keyPrev):
			m.active = (m.active + len(m.opt.Tabs) - 1) % len(m.opt.Tabs)
			return m, nil
		case key.Matches(msg, keyScreen):
			if i := int(msg.String()[0] - '1'); i < len(m.opt.Tabs) {
				m.active = i
			}
			return m, nil
		}
	}
	return m, m.send(cur, msg)
}

func (m *Model) current() screen.Screen {
	if m.wizard {
		return m.opt.Wizard
	}
	if len(m.opt.Tabs) == 0 {
		return nil
	}
	return m.opt.Tabs[m.active].Screen
}

// send delivers msg to one screen and stores the updated screen.
func (m *Model) send(s screen.Screen, msg tea.Msg) tea.Cmd {
	if s == nil {
		return nil
	}
	ns, cmd := s.Update(msg)
	if s == m.opt.Wizard {
		m.opt.Wizard = ns
		return cmd
	}
	for i := range m.opt.Tabs {
		if m.opt.Tabs[i].Screen == s {
			m.opt.Tabs[i].Screen = ns
		}
	}
	return cmd
}

func (m *Model) broadcast(msg tea.Msg) tea.Cmd {
	var cmds []tea.Cmd
	if m.opt.Wizard != nil {
		cmds = append(cmds, m.send(m.opt.Wizard, msg))
	}
	for i := range m.opt.Tabs {
		cmds = append(cmds, m.send(m.opt.Tabs[i].Screen, msg))
	}
	return tea.Batch(cmds...)
}

func (m *Model) now() time.Time {
	if m.env != nil && m.env.Now != nil {
		return m.env.Now()
	}
	return time.Now()
}

// View renders the frame: alt screen, no mouse.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.MouseMode = tea.MouseModeNone
	v.WindowTitle = "pgreplica"
	return v
}

// Render is the frame as text (what View shows), for tests.
func (m *Model) Render() string {
	l := m.lay
	if l.Width == 0 {
		return "" // no size yet
	}
	if l.TooSmall {
		return m.tooSmall()
	}
	t := m.env.Theme
	rule := t.Rule.Render(strings.Repeat(t.Glyphs.HRule, l.Width))
	cur := m.current()
	var body, helpLine string
	switch {
	case m.help:
		body = m.helpView(l.BodyWidth, l.BodyHeight)
		helpLine = " ? or esc close help · q quit"
	case cur != nil:
		body = screen.Block(cur.View(l.BodyWidth, l.BodyHeight), l.BodyWidth, l.BodyHeight)
		helpLine = " " + m.shortHelp(cur)
	default:
		body = screen.Block("", l.BodyWidth, l.BodyHeight)
	}
	lines := []string{
		screen.Fit(m.header(), l.Width),
		screen.Fit(m.tabs(), l.Width),
		rule,
		body,
		rule,
		screen.Fit(m.flashLine(), l.Width),
		screen.Fit(t.Dim.Render(helpLine), l.Width),
	}
	return strings.Join(lines, "\n")
}

func (m *Model) header() string {
	t := m.env.Theme
	cfg := m.env.Config
	title := t.Header.Render("pgreplica")
	if m.wizard {
		title = t.Header.Render("pgreplica " + m.opt.Version + " · install wizard")
	}
	var set, short string
	if cfg != nil && cfg.Origin.DSN != "" {
		n := len(cfg.Replicas)
		set = fmt.Sprintf("%s %s → %d %s", cfg.Name, config.Describe(cfg.Origin.DSN), n, plural(n, "replica", "replicas"))
		short = fmt.Sprintf("%s → %d %s", cfg.Name, n, plural(n, "replica", "replicas"))
	}
	var tail []string
	if !m.wizard {
		tail = append(tail, m.engineState())
		if lag, ok := m.maxLag(); ok {
			tail = append(tail, "max lag "+screen.Dur(lag))
		}
	}
	clock := m.now().Format("15:04") + " "
	if w := m.env.Who; w != nil {
		clock = m.whoText() + "  " + clock
	}
	build := func(set string) string {
		parts := []string{title}
		if set != "" {
			parts = append(parts, set)
		}
		return " " + strings.Join(append(parts, tail...), " · ")
	}
	left := build(set)
	if ansi.StringWidth(left)+ansi.StringWidth(clock)+1 > m.lay.Width {
		left = build(short)
	}
	if m.env.Who != nil {
		// The session's user and address matter more than the lag (the
		// monitor shows it), then than the set's name.
		for _, drop := range []func(){func() { tail = tail[:min(len(tail), 1)] }, func() { short = "" }} {
			if ansi.StringWidth(left)+ansi.StringWidth(clock)+1 <= m.lay.Width {
				break
			}
			drop()
			left = build(short)
		}
	}
	gap := m.lay.Width - ansi.StringWidth(left) - ansi.StringWidth(clock)
	if gap < 1 {
		return left
	}
	return left + strings.Repeat(" ", gap) + clock
}

// whoText is the SSH session's user@host, marked when read-only.
func (m *Model) whoText() string {
	w := m.env.Who
	host := w.Remote
	if h, _, err := net.SplitHostPort(w.Remote); err == nil {
		host = h
	}
	s := w.User + "@" + host
	if m.env.ReadOnly {
		s += " " + m.env.Theme.Warn.Render("read-only")
	}
	return s
}

func (m *Model) engineState() string {
	t := m.env.Theme
	s := m.snap
	switch {
	case m.snapErr != nil:
		return s.Kind + " " + t.Err.Render("UNREACHABLE")
	case s.Kind == "daemon":
		return "daemon " + t.OK.Render("RUNNING") + " " + screen.Dur(m.now().Sub(s.Started))
	case s.Kind == "engine" && s.Running:
		return "engine " + t.OK.Render("RUNNING") + " " + screen.Dur(m.now().Sub(s.Started))
	case s.Kind == "engine":
		return "engine " + t.Warn.Render("STOPPED")
	}
	if m.haveRep && m.reportErr == nil && m.report.DaemonRunning {
		return "daemon " + t.OK.Render("RUNNING")
	}
	return "engine –"
}

func (m *Model) maxLag() (time.Duration, bool) {
	if !m.haveRep || m.reportErr != nil || len(m.report.Replicas) == 0 {
		return 0, false
	}
	var lag time.Duration
	for _, r := range m.report.Replicas {
		lag = max(lag, r.Lag)
	}
	return lag, true
}

func (m *Model) tabs() string {
	t := m.env.Theme
	if m.wizard {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(" ")
	for i, tab := range m.opt.Tabs {
		name := fmt.Sprintf("%d %s", i+1, tab.Name)
		if tab.Badge != nil {
			if b := tab.Badge(); b != "" {
				name += " (" + b + ")"
			}
		}
		if i == m.active {
			sb.WriteString(t.TabActive.Render("[" + name + "]"))
		} else {
			sb.WriteString(t.Tab.Render(" " + name + " "))
		}
		sb.WriteString("  ")
	}
	left := sb.String()
	right := "? help "
	gap := m.lay.Width - ansi.StringWidth(left) - len(right)
	return left + strings.Repeat(" ", max(gap, 1)) + t.Dim.Render(right)
}

func (m *Model) flashLine() string {
	t := m.env.Theme
	if m.flash == "" || m.now().After(m.flashUntil) {
		if m.quitting {
			return " " + t.Dim.Render("quitting…")
		}
		return ""
	}
	g := t.Glyphs
	switch m.flashLevel {
	case screen.Good:
		return " " + t.OK.Render(g.Check+" "+m.flash)
	case screen.Warning:
		return " " + t.Warn.Render("! "+m.flash)
	case screen.Bad:
		return " " + t.Err.Render(g.Cross+" "+m.flash)
	}
	return " " + g.Dot + " " + m.flash
}

func (m *Model) shortHelp(s screen.Screen) string {
	var parts []string
	for _, b := range s.ShortHelp() {
		if b.Enabled() {
			h := b.Help()
			parts = append(parts, h.Key+" "+h.Desc)
		}
	}
	parts = append(parts, "? help", "q quit")
	return strings.Join(parts, " · ")
}

func (m *Model) helpView(w, h int) string {
	t := m.env.Theme
	groups := []screen.HelpGroup{{Title: "GLOBAL", Keys: []key.Binding{keyScreen, keyNext, keyHelp, keyEsc, keyQuit, keyCtrlC}}}
	if m.wizard {
		groups[0].Keys = []key.Binding{keyHelp, keyEsc, keyQuit, keyCtrlC}
	}
	if cur := m.current(); cur != nil {
		groups = append(groups, cur.Help()...)
	}
	cols := 3
	colW := (w - 2) / cols
	var rows []string
	for start := 0; start < len(groups); start += cols {
		end := min(start+cols, len(groups))
		block := make([][]string, end-start)
		height := 0
		for i, g := range groups[start:end] {
			lines := []string{t.Title.Render(g.Title)}
			for _, b := range g.Keys {
				if !b.Enabled() {
					continue
				}
				hk := b.Help()
				lines = append(lines, screen.Fit(t.Key.Render(hk.Key), 10)+hk.Desc)
			}
			block[i] = lines
			height = max(height, len(lines))
		}
		for y := range height {
			row := " "
			for _, lines := range block {
				cell := ""
				if y < len(lines) {
					cell = lines[y]
				}
				row += screen.Fit(cell, colW)
			}
			rows = append(rows, row)
		}
		rows = append(rows, "")
	}
	note := " … = asks for confirmation"
	if m.env.ReadOnly {
		note += " · read-only: actions that change a database are hidden"
	}
	rows = append(rows, t.Dim.Render(note))
	if cfg := m.env.Config; cfg != nil && cfg.Path != "" {
		rows = append(rows, t.Dim.Render(" pgreplica "+m.opt.Version+" · config "+cfg.Path))
	}
	return screen.Block(strings.Join(rows, "\n"), w, h)
}

func (m *Model) tooSmall() string {
	l := m.lay
	text := fmt.Sprintf(` pgreplica needs %dx%d; this window is %dx%d.

 Enlarge the window or zoom out; nothing is lost
 while this message is shown (replay keeps running).

 Without a full screen:
   pgreplica status --json
   pgreplica tables --json

 q quit`, layout.MinWidth, layout.MinHeight, l.Width, l.Height)
	return screen.Block(text, l.Width, l.Height)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
