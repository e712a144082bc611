// Package monitor is the Monitor screen: per replica state, lag (time and
// events), throughput sparkline, last batch and conflicts, over a live log
// pane. The engine runs in this process (start/stop) or in a daemon.
package monitor

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/config"
	"pgreplica/core/replay"
	"pgreplica/core/status"
	"pgreplica/tui/layout"
	"pgreplica/tui/logpane"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
)

// History is how many samples the sparklines keep.
const History = 150

// Row is one replica as the monitor shows it: core's status model (the
// merge of the live snapshot and the databases' report) and the applied
// rate this screen samples.
type Row struct {
	status.Replica
	Rate float64 // applied events per second
}

type series struct {
	lastEvents int64
	lastAt     time.Time
	rate       []float64
	lag        []float64
}

// Model is the Monitor screen.
type Model struct {
	env    *screen.Env
	keys   keys
	Pane   *logpane.Model
	snap   source.Snapshot
	snapOK bool
	report replay.Report
	repErr error
	hasRep bool
	hist   map[string]*series
	cursor int
	paused bool
	deps   Deps
	why    map[string]whyMsg // the last diagnosis of each replica
	prompt *screen.Prompt
	sw     *switchoverRun // a switchover started here
}

type keys struct {
	Engine, Detail, Scope, Unscope, Pause, Skip, Retry, Switchover key.Binding
}

// New makes the screen. startable says whether the engine runs here.
func New(env *screen.Env, startable bool) *Model {
	k := keys{
		Engine:  key.NewBinding(key.WithKeys("S"), key.WithHelp("S", "start/stop engine "+screen.Asks)),
		Detail:  key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "replica detail")),
		Scope:   key.NewBinding(key.WithKeys("l"), key.WithHelp("l", "log of this replica")),
		Unscope: key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "log of all replicas")),
		Pause:   key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause updates")),
	}
	k.Skip, k.Retry = actionKeys() // on with SetDeps
	k.Switchover = switchoverKey()
	k.Engine.SetEnabled(startable && !env.ReadOnly)
	return &Model{env: env, keys: k, Pane: logpane.New(env.Theme), hist: map[string]*series{}, why: map[string]whyMsg{}}
}

// Init does nothing: data comes from the root's polling.
func (m *Model) Init() tea.Cmd { return nil }

// Capturing is true while the log search or a prompt has the keyboard.
func (m *Model) Capturing() bool { return m.Pane.Searching() || m.prompt != nil }

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (screen.Screen, tea.Cmd) {
	switch msg := msg.(type) {
	case screen.StatusMsg:
		if !m.paused && msg.Err == nil {
			m.snap, m.snapOK = msg.Snap, true
		}
		if msg.Err != nil {
			m.snapOK = false
		}
	case screen.ReportMsg:
		if m.paused {
			return m, nil
		}
		m.repErr = msg.Err
		if msg.Err == nil {
			m.report, m.hasRep = msg.Report, true
			m.sample(msg.Report)
		}
	case screen.LogMsg:
		m.Pane.Add(msg.Records)
	case whyMsg:
		return m, m.gotWhy(msg)
	case switchoverStartMsg, switchoverLineMsg, switchoverDoneMsg:
		return m, m.switchoverMsg(msg)
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m, nil
}

// sample adds one point to each replica's sparklines. The applied rate
// is the difference of the applied-events counter between two reads of a
// reachable replica: a read that could not reach it (the counter reads 0)
// or a counter that went back (a re-copy, a reset) starts a new baseline
// instead of a spike.
func (m *Model) sample(r replay.Report) {
	for _, rr := range r.Replicas {
		s := m.hist[rr.Name]
		if s == nil {
			s = &series{}
			m.hist[rr.Name] = s
		}
		if !rr.Reachable {
			s.lastAt = time.Time{} // the next reachable read is a new baseline
			s.rate = appendCapped(s.rate, 0)
			continue
		}
		ev := rr.Position.AppliedEvents
		switch {
		case s.lastAt.IsZero() || !r.TakenAt.After(s.lastAt):
		case ev < s.lastEvents:
			s.rate = appendCapped(s.rate, 0)
			s.lag = appendCapped(s.lag, rr.Lag.Seconds())
		default:
			rate := float64(ev-s.lastEvents) / r.TakenAt.Sub(s.lastAt).Seconds()
			s.rate = appendCapped(s.rate, rate)
			s.lag = appendCapped(s.lag, rr.Lag.Seconds())
		}
		s.lastEvents, s.lastAt = ev, r.TakenAt
	}
}

// RateOf is the latest applied rate sampled for a replica (tests).
func (m *Model) RateOf(name string) (float64, bool) {
	h := m.hist[name]
	if h == nil || len(h.rate) == 0 {
		return 0, false
	}
	return h.rate[len(h.rate)-1], true
}

func appendCapped(v []float64, x float64) []float64 {
	v = append(v, x)
	if len(v) > History {
		v = v[len(v)-History:]
	}
	return v
}

func (m *Model) key(msg tea.KeyPressMsg) (screen.Screen, tea.Cmd) {
	if m.prompt != nil {
		return m, screen.KeyToPrompt(&m.prompt, msg)
	}
	if m.Pane.Searching() {
		_, cmd := m.Pane.Update(msg, false)
		return m, cmd
	}
	rows := m.Rows()
	if c, ok := screen.MoveCursor(msg, m.cursor, len(rows), len(rows)); ok && !key.Matches(msg, screen.HalfDown, screen.HalfUp, screen.Bottom) {
		m.cursor = c
		return m, nil
	}
	switch {
	case key.Matches(msg, m.keys.Engine):
		start := !m.snap.Running
		return m, func() tea.Msg { return screen.EngineMsg{Start: start} }
	case key.Matches(msg, m.keys.Detail):
		if m.cursor < len(rows) {
			if needsWhy(rows[m.cursor]) {
				return m, tea.Batch(screen.OpenDetail, m.fetchWhy(rows[m.cursor].Name, false))
			}
			return m, screen.OpenDetail
		}
		return m, nil
	case key.Matches(msg, m.keys.Skip):
		if m.cursor < len(rows) {
			return m, m.fetchWhy(rows[m.cursor].Name, true)
		}
		return m, nil
	case key.Matches(msg, m.keys.Retry):
		if m.cursor < len(rows) {
			return m, m.retry(rows[m.cursor].Name)
		}
		return m, nil
	case key.Matches(msg, m.keys.Switchover):
		if m.cursor < len(rows) {
			return m, m.askSwitchover(rows[m.cursor].Name)
		}
		return m, nil
	case key.Matches(msg, m.keys.Scope):
		if m.cursor < len(rows) {
			m.Pane.SetScope(rows[m.cursor].Name)
		}
		return m, nil
	case key.Matches(msg, m.keys.Unscope):
		m.Pane.SetScope("")
		return m, nil
	case key.Matches(msg, m.keys.Pause):
		m.paused = !m.paused
		m.Pane.SetPaused(m.paused)
		return m, nil
	}
	_, cmd := m.Pane.Update(msg, false)
	return m, cmd
}

// Rows merges the configured replicas with live and stored status
// (status.Merge: `pgreplica status` shows the same states).
func (m *Model) Rows() []Row {
	var names []string
	if m.env.Config != nil {
		for _, r := range m.env.Config.Replicas {
			names = append(names, r.Name)
		}
	}
	var rep *replay.Report
	if m.hasRep {
		rep = &m.report
	}
	var live *status.Live
	if m.snapOK || m.snap.Running {
		live = &status.Live{Running: m.snap.Running, Replicas: m.snap.Replicas}
	}
	var rows []Row
	for _, r := range status.Merge(names, rep, live) {
		row := Row{Replica: r}
		if h := m.hist[r.Name]; h != nil && len(h.rate) > 0 {
			row.Rate = h.rate[len(h.rate)-1]
		}
		rows = append(rows, row)
	}
	return rows
}

// View renders the screen.
func (m *Model) View(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	rows := m.Rows()
	m.cursor = min(m.cursor, max(len(rows)-1, 0))
	var lines []string
	nameW := max(w-2-11-9-10-11-10-10-2, 10)
	head := "   " + screen.Fit("REPLICA", nameW) + screen.Fit("STATE", 11) + screen.FitRight("LAG", 8) + screen.FitRight("PENDING", 10) + screen.FitRight("APPLIED/s", 11) + screen.FitRight("CONFLICTS", 10) + "  " + screen.Fit("LAST APPLY", 10)
	lines = append(lines, t.Title.Render(screen.Fit(head, w)))
	if len(rows) == 0 {
		lines = append(lines, "   no replicas configured")
	}
	for i, r := range rows {
		cur := "  "
		if i == m.cursor {
			cur = g.Cursor + " "
		}
		lag, pend, rate, conf, last := "–", "–", "–", "–", "–"
		if r.Stored {
			lag, pend, conf = screen.Dur(r.Lag), screen.Count(r.Pending), screen.Count(r.Conflicts)
			if r.PendingUnknown {
				pend = "–"
			}
		}
		if m.hist[r.Name] != nil && len(m.hist[r.Name].rate) > 0 {
			rate = screen.Count(int64(r.Rate + 0.5))
		}
		if !r.LastApplied.IsZero() {
			last = r.LastApplied.In(m.env.Now().Location()).Format("15:04:05")
		}
		confCell := screen.FitRight(conf, 10)
		if r.Conflicts > 0 {
			confCell = t.Err.Render(confCell)
		}
		line := " " + cur + screen.Fit(r.Name, nameW) + t.StateStyle(r.State.Word()).Render(screen.Fit(r.State.Word(), 11)) + screen.FitRight(lag, 8) +
			screen.FitRight(pend, 10) + screen.FitRight(rate, 11) + confCell + "  " + screen.Fit(last, 10)
		lines = append(lines, line)
	}
	lines = append(lines, m.switchoverPanel(w)...)
	// Selected replica: sparklines, last batch, error.
	if m.cursor < len(rows) {
		r := rows[m.cursor]
		h := m.hist[r.Name]
		var rate, lag []float64
		if h != nil {
			rate, lag = h.rate, h.lag
		}
		sparkW := max(w-40, 10)
		peakRate, peakLag := 0.0, 0.0
		for _, v := range rate {
			peakRate = max(peakRate, v)
		}
		for _, v := range lag {
			peakLag = max(peakLag, v)
		}
		lines = append(lines,
			" "+screen.Fit("applied/s", 10)+screen.FitRight(screen.Short(int64(r.Rate+0.5)), 6)+" "+t.OK.Render(screen.Spark(rate, sparkW, g.Spark))+"  peak "+screen.Short(int64(peakRate+0.5)),
			" "+screen.Fit("lag", 10)+screen.FitRight(lagText(r), 6)+" "+t.Warn.Render(screen.Spark(lag, sparkW, g.Spark))+"  max "+screen.Dur(time.Duration(peakLag*float64(time.Second))))
		info := " " + r.Name + ": "
		if b := r.LastBatch; b.Events > 0 {
			info += fmt.Sprintf("last batch %s events in %s", screen.Count(int64(b.Events)), b.Took.Round(time.Millisecond))
		} else {
			info += "no batch applied by this process yet"
		}
		if !m.snap.Running && m.snap.Kind == "engine" {
			info += " · engine stopped (S starts it)"
		}
		if !m.snap.Running && m.hasRep && m.report.DaemonRunning {
			info += " · a pgreplica engine runs elsewhere for this set"
		}
		lines = append(lines, info)
		if r.NoProgressFor > 0 {
			lines = append(lines, " "+t.Warn.Render(fmt.Sprintf("no progress for %d s", int(r.NoProgressFor.Seconds()))))
		}
		if r.Holder != "" {
			lines = append(lines, " standby: the replica is applied by "+r.Holder)
		}
		if r.Err != "" {
			lines = append(lines, banner(t.Err.Render, g.Cross+" "+r.Name+": "+r.Err, w)...)
		}
	}
	if m.repErr != nil {
		lines = append(lines, banner(t.Err.Render, g.Cross+" "+m.repErr.Error(), w)...)
	}
	if m.paused {
		lines = append(lines, " "+t.Warn.Render("PAUSED")+" · p resumes updates")
	}
	paneH := h - len(lines)
	if paneH < 3 {
		lines = lines[:max(h-3, 0)]
		if len(lines) > 0 {
			lines[len(lines)-1] = " " + t.Dim.Render("… enter shows the whole text")
		}
		paneH = h - len(lines)
	}
	body := screen.Block(strings.Join(lines, "\n"), w, h-paneH) + "\n" + m.Pane.View(w, paneH)
	if m.prompt != nil {
		return screen.Overlay(body, m.prompt.View(t, w-4), w, h)
	}
	return body
}

// banner is an error wrapped to as many lines as it needs.
func banner(style func(...string) string, text string, w int) []string {
	var out []string
	for i, l := range screen.Wrap(text, w-3) {
		if i > 0 {
			l = "  " + l
		}
		out = append(out, " "+style(l))
	}
	return out
}

// Detail is the selected replica, whole: state, error, numbers.
func (m *Model) Detail() (string, []string, bool) {
	rows := m.Rows()
	if m.cursor >= len(rows) {
		return "", nil, false
	}
	r := rows[m.cursor]
	text := []string{"state       " + r.State.Word()}
	if r.Err != "" {
		text = append(text, "", "error", "  "+r.Err, "")
	}
	if r.Stored {
		text = append(text,
			"position    "+r.Position.Snapshot.String(),
			"pending     "+screen.Count(r.Pending)+" events captured and not yet applied",
			"lag         "+screen.Dur(r.Lag)+" (age of the oldest pending event)",
			"conflicts   "+screen.Count(r.Conflicts))
	} else {
		text = append(text, "position    – (the replica's bookkeeping could not be read)")
	}
	last := "never"
	if !r.LastApplied.IsZero() {
		last = r.LastApplied.In(m.env.Now().Location()).Format("2006-01-02 15:04:05") + " (" + screen.Ago(m.env.Now(), r.LastApplied) + ")"
	}
	text = append(text, "last apply  "+last)
	if b := r.LastBatch; b.Events > 0 {
		text = append(text, fmt.Sprintf("last batch  %s events in %s", screen.Count(int64(b.Events)), b.Took.Round(time.Millisecond)))
	}
	for tb, st := range r.Tables {
		text = append(text, "table       "+tb+" is "+string(st))
	}
	if dsn := m.dsnOf(r.Name); dsn != "" {
		text = append(text, "dsn         "+dsn)
	}
	if w, ok := m.why[r.Name]; ok {
		text = append(text, whyLines(w)...)
	} else if needsWhy(r) && m.deps.Why != nil {
		text = append(text, "", "why: looking for the event it refuses…")
	}
	if r.State.Problem() {
		text = append(text, "", "Try: pgreplica -c <config> check · the Log tab (4) shows this replica's records with l here")
	}
	return "replica " + r.Name, text, true
}

func (m *Model) dsnOf(name string) string {
	if m.env.Config == nil {
		return ""
	}
	for _, r := range m.env.Config.Replicas {
		if r.Name == name {
			return config.Describe(r.DSN)
		}
	}
	return ""
}

func positionText(p replay.Position) string {
	if p.Snapshot.IsZero() {
		return "– (nothing applied yet)"
	}
	return p.Snapshot.String()
}

func lagText(r Row) string {
	if !r.Stored {
		return "–"
	}
	return screen.Dur(r.Lag)
}

// ShortHelp is the footer.
func (m *Model) ShortHelp() []key.Binding {
	if m.Pane.Searching() {
		return nil
	}
	k := m.Pane.Keys
	engine := screen.ShortKey(m.keys.Engine, "start engine")
	if m.snap.Running {
		engine = screen.ShortKey(m.keys.Engine, "stop "+screen.Asks)
	}
	return []key.Binding{screen.ShortKey(m.keys.Detail, "detail"), engine, screen.ShortKey(m.keys.Scope, "log of it"),
		screen.ShortKey(k.Follow, "follow"), screen.ShortKey(k.Level, "level"), k.Search, screen.ShortKey(k.Wrap, "wrap"), screen.ShortKey(m.keys.Pause, "pause"), screen.ShortKey(screen.Up, "move")}
}

// Help is the overlay's part.
func (m *Model) Help() []screen.HelpGroup {
	return []screen.HelpGroup{
		{Title: "MONITOR", Keys: []key.Binding{screen.Up, m.keys.Detail, m.keys.Scope, m.keys.Unscope, m.keys.Pause, m.keys.Engine, m.keys.Skip, m.keys.Retry, m.keys.Switchover}},
		m.Pane.HelpGroup(),
	}
}

var _ = layout.MinWidth
