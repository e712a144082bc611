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
	"pgreplica/core/status"
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
	// EngineNote, when set, replaces the advice to run the daemon when
	// quitting stops the engine run here.
	EngineNote string
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

	// detail is open: the current screen's selected item, whole.
	detail    bool
	detailPgr screen.Pager
	helpPgr   screen.Pager
	// prompt is the root's own confirmation (quit with the engine here,
	// stop the engine).
	prompt *screen.Prompt
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
type quitConfirmedMsg struct{}

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
		if !msg.Start && m.opt.Source.Startable() && m.snap.Running && !msg.Confirmed {
			m.prompt = &screen.Prompt{Level: 2, Title: "Stop replication?",
				Body: []string{
					"Stops the engine running in this process after the batch in flight: no replica receives changes until it is started again.",
					"Changes keep being captured on the origin and nothing is lost. Way back: S starts it again.",
				},
				OnYes: func() tea.Msg { return screen.EngineMsg{Start: false, Confirmed: true} }}
			return m, nil
		}
		return m, m.engine(msg.Start)
	case screen.OpenDetailMsg:
		if d, ok := m.current().(screen.Detailer); ok {
			if _, _, ok := d.Detail(); ok {
				m.detail, m.detailPgr = true, screen.Pager{}
			}
		}
		return m, nil
	case quitConfirmedMsg:
		m.exitText = m.engineExitText()
		return m, m.quit()
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
	m.flash, m.flashLevel, m.flashUntil = "stopping the engine after the batch in flight…", screen.Info, m.now().Add(time.Minute)
	poll := m.pollSnapshot()
	return func() tea.Msg {
		src.Stop()
		return tea.BatchMsg{screen.Flash(screen.Info, "engine stopped · S starts it again"), poll}
	}
}

// engineHere is true while the engine runs in this process: quitting
// stops replication.
func (m *Model) engineHere() bool { return m.opt.Source.Startable() && m.snap.Running }

// askQuit quits, asking first when that stops replication.
func (m *Model) askQuit() tea.Cmd {
	if !m.engineHere() || m.quitting {
		return m.quit()
	}
	m.prompt = &screen.Prompt{Level: 2, Title: "Quit and stop replication?",
		Body: []string{
			"The replay engine runs inside this TUI: quitting stops it, and no replica receives changes until an engine runs again (changes keep being captured on the origin; nothing is lost).",
			m.engineAdvice(),
		},
		OnYes: func() tea.Msg { return quitConfirmedMsg{} }}
	return nil
}

func (m *Model) daemonCommand() string {
	c := "pgreplica run --daemon"
	if cfg := m.env.Config; cfg != nil && cfg.Path != "" {
		c = "pgreplica -c " + cfg.Path + " run --daemon"
	}
	return c + " (or the systemd unit scripts/pgreplica.service)"
}

func (m *Model) engineAdvice() string {
	if m.opt.EngineNote != "" {
		return m.opt.EngineNote
	}
	return "To keep replicating without a terminal, run the daemon: " + m.daemonCommand()
}

func (m *Model) engineExitText() string {
	if m.opt.EngineNote != "" {
		return "replication stopped: the engine ran in this TUI and quit with it."
	}
	return "replication stopped: the engine ran in this TUI and quit with it.\nTo replicate without a terminal run: " + m.daemonCommand()
}

// quit stops the engine run here (after the batch in flight), then quits.
func (m *Model) quit() tea.Cmd {
	if m.quitting {
		return tea.Quit // second request: do not wait
	}
	m.quitting = true
	src := m.opt.Source
	if m.engineHere() {
		if m.exitText == "" {
			m.exitText = m.engineExitText()
		}
		m.flash, m.flashLevel, m.flashUntil = "stopping the engine after the batch in flight…", screen.Info, m.now().Add(time.Minute)
	}
	return func() tea.Msg { src.Stop(); return quitNowMsg{} }
}

func (m *Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	cur := m.current()
	if m.prompt != nil {
		if msg.String() == "ctrl+c" && m.quitting {
			return m, tea.Quit
		}
		return m, screen.KeyToPrompt(&m.prompt, msg)
	}
	if msg.String() == "ctrl+c" {
		if c, ok := cur.(interface{ Busy() bool }); ok && c.Busy() {
			return m, m.send(cur, msg) // cancels the running step first
		}
		return m, m.askQuit()
	}
	if m.lay.TooSmall {
		if key.Matches(msg, keyQuit) {
			return m, m.askQuit()
		}
		return m, nil
	}
	if m.help {
		switch {
		case key.Matches(msg, keyHelp, keyEsc):
			m.help = false
		case key.Matches(msg, keyQuit):
			return m, m.askQuit()
		default:
			m.helpPgr.Key(msg)
		}
		return m, nil
	}
	if m.detail {
		switch {
		case key.Matches(msg, keyEsc, screen.DetailKey):
			m.detail = false
		case key.Matches(msg, keyHelp):
			m.help, m.helpPgr = true, screen.Pager{}
		case key.Matches(msg, keyQuit):
			return m, m.askQuit()
		default:
			m.detailPgr.Key(msg)
		}
		return m, nil
	}
	if cur != nil && cur.Capturing() {
		return m, m.send(cur, msg)
	}
	switch {
	case key.Matches(msg, keyQuit):
		return m, m.askQuit()
	case key.Matches(msg, keyHelp):
		m.help, m.helpPgr = true, screen.Pager{}
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
	// The flash line wraps to as many lines as it needs (up to a third of
	// the body), taken from the body.
	flash := m.flashLines(l.Width)
	bodyH := l.BodyHeight - (len(flash) - 1)
	var body, helpLine string
	switch {
	case m.help:
		body = m.helpView(l.BodyWidth, bodyH)
		helpLine = " j/k ctrl+d/u scroll · ? or esc close help · q quit"
	case m.detail && cur != nil:
		body = m.detailView(cur, l.BodyWidth, bodyH)
		helpLine = " esc close · j/k scroll · ctrl+d/u page · g/G top/bottom · ? help"
	case cur != nil:
		body = screen.Block(cur.View(l.BodyWidth, bodyH), l.BodyWidth, bodyH)
		helpLine = m.shortHelp(cur, l.Width)
	default:
		body = screen.Block("", l.BodyWidth, bodyH)
	}
	if m.prompt != nil {
		body = screen.Overlay(body, m.prompt.View(t, l.BodyWidth-4), l.BodyWidth, bodyH)
		helpLine = " " + m.prompt.Footer()
	}
	lines := []string{
		screen.Fit(m.header(), l.Width),
		screen.Fit(m.tabs(), l.Width),
		rule,
		body,
		rule,
	}
	for _, f := range flash {
		lines = append(lines, screen.Fit(f, l.Width))
	}
	lines = append(lines, screen.Fit(t.Dim.Render(helpLine), l.Width))
	return strings.Join(lines, "\n")
}

// detailView is the current screen's selected item, whole: wrapped to
// the width and scrollable.
func (m *Model) detailView(cur screen.Screen, w, h int) string {
	t := m.env.Theme
	d, ok := cur.(screen.Detailer)
	if !ok {
		m.detail = false
		return screen.Block(cur.View(w, h), w, h)
	}
	title, text, ok := d.Detail()
	if !ok {
		m.detail = false
		return screen.Block(cur.View(w, h), w, h)
	}
	lines := []string{t.Rule.Render(screen.Rule(t.Glyphs.HRule, title, w))}
	for _, l := range screen.WrapAll(text, w-2) {
		lines = append(lines, " "+l)
	}
	return m.detailPgr.View(lines, w, h)
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
		if w := m.worstText(); w != "" {
			tail = append(tail, w)
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
	for _, alt := range []string{short, ""} {
		if ansi.StringWidth(left)+ansi.StringWidth(clock)+1 <= m.lay.Width {
			break
		}
		left = build(alt)
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

func (m *Model) uptime(started time.Time) string {
	if started.IsZero() {
		return ""
	}
	return " " + screen.Dur(m.now().Sub(started))
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
		return "daemon " + t.OK.Render("RUNNING") + m.uptime(s.Started)
	case s.Kind == "engine" && s.Running:
		return "engine " + t.OK.Render("RUNNING") + m.uptime(s.Started)
	case s.Kind == "engine":
		return "engine " + t.Warn.Render("STOPPED")
	}
	if m.haveRep && m.reportErr == nil && m.report.DaemonRunning {
		return "daemon " + t.OK.Render("RUNNING")
	}
	return "engine –"
}

// replicas is core's status model of the replicas from what the root
// polls (the same merge the monitor and `pgreplica status` use).
func (m *Model) replicas() []status.Replica {
	var names []string
	if cfg := m.env.Config; cfg != nil {
		for _, r := range cfg.Replicas {
			names = append(names, r.Name)
		}
	}
	var rep *replay.Report
	if m.haveRep && m.reportErr == nil {
		rep = &m.report
	}
	var live *status.Live
	if m.snapErr == nil && m.snap.Running {
		live = &status.Live{Running: true, Replicas: m.snap.Replicas}
	}
	return status.Merge(names, rep, live)
}

// worstText is the header's word on the replicas: the worst replica's
// state and the age of its last apply when it is not healthy, else the
// largest lag. It never says "max lag 0s" while a replica is down.
func (m *Model) worstText() string {
	t := m.env.Theme
	if m.haveRep && m.reportErr != nil {
		return "status " + t.Err.Render("UNKNOWN")
	}
	rs := m.replicas()
	w, ok := status.Worst(rs)
	if !ok || w.State == status.Unknown {
		return ""
	}
	if w.State.Severity() >= status.Retrying.Severity() {
		return w.Name + " " + t.StateStyle(w.State.Word()).Render(w.State.Word()) + " · applied " + screen.Ago(m.now(), w.LastApplied)
	}
	var lag time.Duration
	for _, r := range rs {
		lag = max(lag, r.Lag)
	}
	return "max lag " + screen.Dur(lag)
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

// flashLines is the status line, wrapped to as many lines as it needs
// (at most a third of the body): an error is never cut.
func (m *Model) flashLines(w int) []string {
	t := m.env.Theme
	if m.flash == "" || m.now().After(m.flashUntil) {
		if m.quitting {
			return []string{" " + t.Dim.Render("quitting…")}
		}
		return []string{""}
	}
	g := t.Glyphs
	mark, style := g.Dot+" ", t.Info
	switch m.flashLevel {
	case screen.Good:
		mark, style = g.Check+" ", t.OK
	case screen.Warning:
		mark, style = "! ", t.Warn
	case screen.Bad:
		mark, style = g.Cross+" ", t.Err
	}
	wrapped := screen.Wrap(m.flash, w-1-screen.Width(mark))
	limit := max(m.lay.BodyHeight/3, 1)
	if len(wrapped) > limit {
		wrapped = wrapped[:limit]
		wrapped[limit-1] = screen.Fit(wrapped[limit-1]+" …", w-1-screen.Width(mark)-1) + "…"
	}
	out := make([]string, len(wrapped))
	for i, l := range wrapped {
		if i == 0 {
			l = mark + l
		} else {
			l = strings.Repeat(" ", screen.Width(mark)) + l
		}
		if m.flashLevel == screen.Info {
			out[i] = " " + l
		} else {
			out[i] = " " + style.Render(l)
		}
	}
	return out
}

// shortHelp is the key line: the screen's keys, most important first, as
// many as fit the width; the rest are in the ? help.
func (m *Model) shortHelp(s screen.Screen, w int) string {
	var parts []string
	for _, b := range s.ShortHelp() {
		if b.Enabled() {
			h := b.Help()
			parts = append(parts, strings.TrimSpace(h.Key+" "+h.Desc))
		}
	}
	return m.fitKeys(parts, w)
}

// fitKeys joins parts that fit w, always ending with "? help" (or "? more"
// when some did not fit) and "q quit" when there is room.
func (m *Model) fitKeys(parts []string, w int) string {
	const sep = " · "
	line := ""
	dropped := false
	for _, p := range parts {
		next := p
		if line != "" {
			next = line + sep + p
		}
		if screen.Width(" "+next+sep+"? more") > w {
			dropped = true
			break
		}
		line = next
	}
	tail := "? help"
	if dropped {
		tail = "? more"
	}
	if line == "" {
		line = tail
	} else {
		line += sep + tail
	}
	if !dropped && screen.Width(" "+line+sep+"q quit") <= w {
		line += sep + "q quit"
	}
	return " " + line
}

// helpView lists every key of the current screen in full, in as many
// columns as fit, scrollable.
func (m *Model) helpView(w, h int) string {
	t := m.env.Theme
	global := []key.Binding{keyScreen, keyNext, keyPrev, keyHelp, keyEsc, keyQuit, keyCtrlC}
	if m.wizard {
		global = []key.Binding{keyHelp, keyEsc, keyQuit, keyCtrlC}
	}
	groups := []screen.HelpGroup{{Title: "GLOBAL", Keys: global}}
	if cur := m.current(); cur != nil {
		groups = append(groups, cur.Help()...)
	}
	groups = append(groups, screen.HelpGroup{Title: "DETAIL VIEW", Keys: []key.Binding{keyDetailScroll, keyDetailClose}})
	// A group whose keys are all off (read-only) is left out.
	kept := groups[:0]
	for _, g := range groups {
		for _, b := range g.Keys {
			if b.Enabled() {
				kept = append(kept, g)
				break
			}
		}
	}
	groups = kept
	cols := max(min((w-1)/38, 3), 1)
	colW := (w - 1) / cols
	var rows []string
	if m.env.ReadOnly {
		rows = append(rows, t.Warn.Render(" read-only: actions that change a database are hidden"), "")
	}
	for start := 0; start < len(groups); start += cols {
		end := min(start+cols, len(groups))
		block := make([][]string, end-start)
		height := 0
		for i, g := range groups[start:end] {
			block[i] = helpColumn(t.Title.Render(g.Title), g.Keys, colW-1, t.Key.Render)
			height = max(height, len(block[i]))
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
	if !m.env.ReadOnly {
		for _, l := range screen.Wrap(screen.Asks+" = asks for confirmation first (y, or typing a name); enter alone never confirms", w-2) {
			rows = append(rows, t.Dim.Render(" "+l))
		}
	}
	if cfg := m.env.Config; cfg != nil && cfg.Path != "" {
		rows = append(rows, t.Dim.Render(" pgreplica "+m.opt.Version+" · config "+cfg.Path))
	}
	return m.helpPgr.View(rows, w, h)
}

var (
	keyDetailScroll = key.NewBinding(key.WithKeys("j", "k"), key.WithHelp("j/k g/G", "scroll the detail or help"))
	keyDetailClose  = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "close the detail view"))
)

// helpColumn is one group: each key with its whole description, wrapped
// under itself when it is longer than the column.
func helpColumn(title string, keys []key.Binding, w int, keyStyle func(...string) string) []string {
	keyW := 0
	for _, b := range keys {
		if b.Enabled() {
			keyW = max(keyW, screen.Width(b.Help().Key))
		}
	}
	keyW = min(keyW+2, 12)
	lines := []string{title}
	for _, b := range keys {
		if !b.Enabled() {
			continue
		}
		hk := b.Help()
		k := hk.Key
		if screen.Width(k) >= keyW {
			lines = append(lines, keyStyle(k))
			k = ""
		}
		for i, d := range screen.Wrap(hk.Desc, max(w-keyW, 8)) {
			if i == 0 {
				lines = append(lines, screen.Fit(keyStyle(k), keyW)+d)
			} else {
				lines = append(lines, strings.Repeat(" ", keyW)+d)
			}
		}
	}
	return lines
}

func (m *Model) tooSmall() string {
	l := m.lay
	text := fmt.Sprintf(` pgreplica needs at least %dx%d (drawn for 80x24);
 this window is %dx%d.

 Enlarge the window or zoom out; nothing is lost
 while this message is shown (replay keeps running).

 Without a full screen:
   pgreplica status --json
   pgreplica tables --json
   pgreplica status --watch 2s

 q quit`, layout.MinWidth, layout.MinHeight, l.Width, l.Height)
	return screen.Block(text, l.Width, l.Height)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
