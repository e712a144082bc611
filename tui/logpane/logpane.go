// Package logpane is the live log pane: records read from the log ring by
// sequence number, with follow, pause, scroll, a level filter, a replica
// scope and search with n/N.
package logpane

import (
	"fmt"
	"log/slog"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/logring"
	"pgreplica/tui/screen"
	"pgreplica/tui/theme"
)

// Capacity is how many records the pane keeps.
const Capacity = 5000

// Keys of the pane.
type Keys struct {
	Follow, Level, Search, Next, Prev, Up, Down, PageUp, PageDown, Bottom, Times, Clear, Wrap, Detail key.Binding
}

// DefaultKeys are the pane's keys; Up/Down are for the Log screen, where
// the pane has the whole body.
func DefaultKeys() Keys {
	return Keys{
		Follow:   key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "follow on/off")),
		Level:    key.NewBinding(key.WithKeys("L"), key.WithHelp("L", "level ≥ D/I/W/E")),
		Search:   key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "search")),
		Next:     key.NewBinding(key.WithKeys("n"), key.WithHelp("n/N", "next/prev match")),
		Prev:     key.NewBinding(key.WithKeys("N"), key.WithHelp("N", "previous match")),
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("j/k", "scroll")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("j", "scroll down")),
		PageUp:   key.NewBinding(key.WithKeys("ctrl+u", "pgup"), key.WithHelp("ctrl+u/d", "scroll log")),
		PageDown: key.NewBinding(key.WithKeys("ctrl+d", "pgdown"), key.WithHelp("ctrl+d", "scroll down")),
		Bottom:   key.NewBinding(key.WithKeys("G", "end"), key.WithHelp("G", "bottom + follow")),
		Times:    key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "timestamps")),
		Clear:    key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "clear view")),
		Wrap:     key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "wrap on/off")),
		Detail:   key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "line detail")),
	}
}

// Model is the pane.
type Model struct {
	th      *theme.Theme
	Keys    Keys
	records []logring.Record

	follow    bool
	paused    bool
	level     slog.Level
	scope     string // replica name, "" = all
	search    screen.Input
	inSearch  bool
	noTimes   bool
	top       int // first shown line of the filtered list when not following
	newLines  int
	height    int
	match     int // index (in filtered) of the current match, -1 none
	wrap      bool
	hasCursor bool
	// cursor is the selected record (index in filtered) where the pane
	// has a cursor (the Log tab); -1 follows the newest.
	cursor int
	width  int
}

// New makes a pane that follows.
func New(th *theme.Theme) *Model {
	return &Model{th: th, Keys: DefaultKeys(), follow: true, level: slog.LevelInfo, search: screen.Input{Prompt: "search: "}, match: -1, cursor: -1}
}

// Add appends records (from a LogMsg).
func (m *Model) Add(recs []logring.Record) {
	if m.paused {
		return
	}
	before := len(m.filtered())
	m.records = append(m.records, recs...)
	if over := len(m.records) - Capacity; over > 0 {
		m.records = append([]logring.Record(nil), m.records[over:]...)
	}
	if !m.follow {
		m.newLines += len(m.filtered()) - before
		if m.newLines < 0 {
			m.newLines = 0
		}
	}
}

// Wrapping reports whether long lines wrap.
func (m *Model) Wrapping() bool { return m.wrap }

// Hidden is the number of records the level filter hides (in the scope).
func (m *Model) Hidden() int {
	n := 0
	for _, r := range m.records {
		if r.Level < m.level && m.inScope(r) {
			n++
		}
	}
	return n
}

// SetScope shows only the records of one replica ("" = all).
func (m *Model) SetScope(replica string) { m.scope = replica; m.top = 0 }

// Scope is the replica shown, "" for all.
func (m *Model) Scope() string { return m.scope }

// SetPaused stops (true) or resumes taking new records.
func (m *Model) SetPaused(p bool) { m.paused = p }

// Searching is true while the search input has the keyboard.
func (m *Model) Searching() bool { return m.inSearch }

// Following reports follow mode.
func (m *Model) Following() bool { return m.follow }

func (m *Model) keep(r logring.Record) bool {
	return r.Level >= m.level && m.inScope(r)
}

func (m *Model) inScope(r logring.Record) bool {
	if m.scope == "" {
		return true
	}
	v := r.Get("replica")
	return v == m.scope || r.Get("sub") == m.scope
}

func (m *Model) filtered() []logring.Record {
	out := make([]logring.Record, 0, len(m.records))
	for _, r := range m.records {
		if m.keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func (m *Model) line(r logring.Record) string {
	s := r.Text()
	if m.noTimes {
		if i := strings.IndexByte(s, ' '); i > 0 {
			s = s[i+1:]
		}
	}
	return s
}

// Update handles a key; it returns false when the key is not the pane's.
func (m *Model) Update(msg tea.KeyPressMsg, useUpDown bool) (bool, tea.Cmd) {
	if m.inSearch {
		switch msg.String() {
		case "enter":
			m.inSearch = false
			m.find(+1, true)
		case "esc":
			m.inSearch = false
			m.search.Value = ""
			m.match = -1
		default:
			m.search.Update(msg)
		}
		return true, nil
	}
	rows := m.filtered()
	maxTop := max(len(rows)-m.height, 0)
	scroll := func(d int) {
		if useUpDown {
			m.moveCursor(rows, d)
			return
		}
		if m.follow {
			m.top = maxTop
			m.follow = false
		}
		m.top = min(max(m.top+d, 0), maxTop)
		if m.top == maxTop && d > 0 {
			m.follow, m.newLines = true, 0
		}
	}
	switch {
	case key.Matches(msg, m.Keys.Follow):
		m.follow = !m.follow
		if m.follow {
			m.newLines = 0
		} else {
			m.top = maxTop
		}
	case key.Matches(msg, m.Keys.Level):
		switch m.level {
		case slog.LevelDebug:
			m.level = slog.LevelInfo
		case slog.LevelInfo:
			m.level = slog.LevelWarn
		case slog.LevelWarn:
			m.level = slog.LevelError
		default:
			m.level = slog.LevelDebug
		}
		return true, screen.Flash(screen.Info, "log level ≥ "+m.level.String())
	case key.Matches(msg, m.Keys.Search):
		m.inSearch = true
		m.search.Value = ""
	case key.Matches(msg, m.Keys.Next):
		return true, m.find(+1, false)
	case key.Matches(msg, m.Keys.Prev):
		return true, m.find(-1, false)
	case key.Matches(msg, m.Keys.PageUp):
		scroll(-max(m.height/2, 1))
	case key.Matches(msg, m.Keys.PageDown):
		scroll(max(m.height/2, 1))
	case key.Matches(msg, m.Keys.Bottom):
		m.follow, m.newLines, m.cursor = true, 0, -1
	case key.Matches(msg, m.Keys.Wrap):
		m.wrap = !m.wrap
		if m.wrap {
			return true, screen.Flash(screen.Info, "log lines wrap · w cuts them again")
		}
		return true, screen.Flash(screen.Info, "log lines cut at the width · w wraps them")
	case useUpDown && key.Matches(msg, m.Keys.Detail):
		if len(rows) > 0 {
			return true, screen.OpenDetail
		}
	case key.Matches(msg, m.Keys.Times):
		m.noTimes = !m.noTimes
	case key.Matches(msg, m.Keys.Clear):
		m.records, m.top, m.newLines, m.match, m.cursor = nil, 0, 0, -1, -1
	case useUpDown && key.Matches(msg, m.Keys.Up):
		scroll(-1)
	case useUpDown && key.Matches(msg, m.Keys.Down):
		scroll(1)
	default:
		return false, nil
	}
	return true, nil
}

// SetCursor gives the pane a cursor (the Log tab): j/k select a record,
// enter shows it whole.
func (m *Model) SetCursor(on bool) { m.hasCursor = on }

// moveCursor moves the selected record by d; reaching the newest follows.
func (m *Model) moveCursor(rows []logring.Record, d int) {
	if len(rows) == 0 {
		return
	}
	cur := m.cursor
	if cur < 0 || m.follow {
		cur = len(rows) - 1
	}
	cur = min(max(cur+d, 0), len(rows)-1)
	if cur == len(rows)-1 && d > 0 {
		m.follow, m.newLines, m.cursor = true, 0, -1
		return
	}
	if m.follow {
		m.top = max(len(rows)-m.height, 0)
	}
	m.follow, m.cursor = false, cur
	if cur < m.top {
		m.top = cur
	}
	for m.top < cur && !m.fits(rows, m.top, cur) {
		m.top++
	}
}

// fits reports whether records from..to all show in the pane's height.
func (m *Model) fits(rows []logring.Record, from, to int) bool {
	n := 0
	for i := from; i <= to; i++ {
		n += len(m.render(rows[i], i))
	}
	return n <= m.height
}

// Selected is the record the cursor is on (the newest when following).
func (m *Model) Selected() (logring.Record, bool) {
	rows := m.filtered()
	if len(rows) == 0 {
		return logring.Record{}, false
	}
	i := m.cursor
	if i < 0 || i >= len(rows) || m.follow {
		i = len(rows) - 1
	}
	return rows[i], true
}

// Detail is the selected record, whole: time, level, message and every
// attribute on its own line.
func (m *Model) Detail() (string, []string, bool) {
	r, ok := m.Selected()
	if !ok {
		return "", nil, false
	}
	text := []string{
		"time     " + r.Time.Format("2006-01-02 15:04:05.000 MST"),
		"level    " + r.Level.String(),
		"message  " + r.Message,
	}
	for _, a := range r.Attrs {
		text = append(text, screen.Fit(a.Key, 8)+" "+a.Value)
	}
	text = append(text, "", "as the daemon logs it:", "  "+r.Text())
	return fmt.Sprintf("log record %d", r.Seq), text, true
}

// find moves to the next (dir +1) or previous match of the search.
func (m *Model) find(dir int, fromEnd bool) tea.Cmd {
	q := strings.ToLower(m.search.Value)
	if q == "" {
		return screen.Flash(screen.Info, "no search: press / first")
	}
	rows := m.filtered()
	start := m.match
	if fromEnd || start < 0 {
		start = len(rows)
		dir = -1
	}
	for i := 1; i <= len(rows); i++ {
		j := ((start+dir*i)%len(rows) + len(rows)) % len(rows)
		if strings.Contains(strings.ToLower(m.line(rows[j])), q) {
			m.match = j
			m.follow = false
			if m.cursor >= 0 || m.hasCursor {
				m.cursor = j
			}
			m.top = min(max(j-m.height/2, 0), max(len(rows)-m.height, 0))
			return nil
		}
	}
	m.match = -1
	return screen.Flash(screen.Warning, fmt.Sprintf("no log line matches %q", m.search.Value))
}

// Title is the pane's title line content.
func (m *Model) Title() string {
	var parts []string
	switch {
	case m.paused:
		parts = append(parts, "PAUSED")
	case m.follow:
		parts = append(parts, "FOLLOW")
	default:
		parts = append(parts, "SCROLL")
	}
	parts = append(parts, "level ≥ "+m.level.String())
	if n := m.Hidden(); n > 0 {
		parts = append(parts, screen.Count(int64(n))+" hidden")
	}
	if m.wrap {
		parts = append(parts, "wrap")
	}
	if m.scope != "" {
		parts = append(parts, "replica "+m.scope)
	} else {
		parts = append(parts, "all replicas")
	}
	if m.search.Value != "" {
		parts = append(parts, "/"+m.search.Value)
	}
	if m.newLines > 0 && !m.follow {
		parts = append(parts, fmt.Sprintf("+%d new", m.newLines))
	}
	return "log · " + strings.Join(parts, " · ")
}

// render is one record as the pane shows it: one line cut at the width,
// or wrapped when wrap is on; the current search match is always wrapped
// (so what matched is on screen) with the match highlighted.
func (m *Model) render(r logring.Record, i int) []string {
	t := m.th
	w := max(m.width-1, 10)
	text := m.line(r)
	style := func(s string) string { return s }
	switch {
	case r.Level >= slog.LevelError:
		style = func(s string) string { return t.Err.Render(s) }
	case r.Level >= slog.LevelWarn:
		style = func(s string) string { return t.Warn.Render(s) }
	case r.Level < slog.LevelInfo:
		style = func(s string) string { return t.Dim.Render(s) }
	}
	isMatch := i == m.match && m.search.Value != ""
	selected := m.hasCursor && !m.follow && i == m.cursor
	var parts []string
	if m.wrap || isMatch {
		parts = screen.Wrap(text, w)
	} else {
		parts = []string{screen.Fit(text, w)}
	}
	out := make([]string, len(parts))
	for j, p := range parts {
		switch {
		case selected:
			out[j] = t.Selected.Render(" " + screen.Fit(p, w))
		case isMatch:
			out[j] = " " + highlight(p, m.search.Value, func(s string) string { return t.Selected.Render(s) }, style)
		default:
			out[j] = " " + style(p)
		}
	}
	return out
}

// highlight renders the occurrences of q in s (case-insensitive) with hi,
// the rest with rest.
func highlight(s, q string, hi, rest func(string) string) string {
	if q == "" {
		return rest(s)
	}
	low, lq := strings.ToLower(s), strings.ToLower(q)
	var sb strings.Builder
	for {
		i := strings.Index(low, lq)
		if i < 0 || len(low) != len(s) {
			sb.WriteString(rest(s))
			return sb.String()
		}
		sb.WriteString(rest(s[:i]))
		sb.WriteString(hi(s[i : i+len(q)]))
		s, low = s[i+len(q):], low[i+len(q):]
	}
}

// View renders the pane with its title into w x h.
func (m *Model) View(w, h int) string {
	t := m.th
	g := t.Glyphs
	m.width = w
	rows := m.filtered()
	count := screen.Count(int64(len(rows)))
	title := g.HRule + " " + m.Title() + " "
	fill := w - screen.Width(title) - screen.Width(count) - 3
	lines := []string{t.Rule.Render(screen.Fit(title+strings.Repeat(g.HRule, max(fill, 1))+" "+count+" "+g.HRule, w))}
	bodyH := h - 1
	if m.inSearch {
		bodyH--
	}
	m.height = bodyH
	var body []string
	if m.follow {
		// From the newest record back until the pane is full.
		for i := len(rows) - 1; i >= 0 && len(body) < bodyH; i-- {
			body = append(m.render(rows[i], i), body...)
		}
		if len(body) > bodyH {
			body = body[len(body)-bodyH:]
		}
	} else {
		top := min(m.top, max(len(rows)-1, 0))
		for i := top; i < len(rows) && len(body) < bodyH; i++ {
			body = append(body, m.render(rows[i], i)...)
		}
		if len(body) > bodyH {
			body = body[:bodyH]
		}
	}
	lines = append(lines, body...)
	if len(rows) == 0 {
		if n := m.Hidden(); n > 0 {
			lines = append(lines, t.Dim.Render(fmt.Sprintf(" no records at level ≥ %s · %s hidden by the level filter · L changes it", m.level, screen.Count(int64(n)))))
		} else {
			lines = append(lines, t.Dim.Render(" no log records yet"))
		}
	}
	for len(lines) < h-boolInt(m.inSearch) {
		lines = append(lines, "")
	}
	if m.inSearch {
		lines = append(lines, " "+m.search.View(true))
	}
	return screen.Block(strings.Join(lines, "\n"), w, h)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ShortHelp is the pane's part of a footer.
func (m *Model) ShortHelp() []key.Binding {
	return []key.Binding{m.Keys.Follow, m.Keys.Level, m.Keys.Search, m.Keys.Next}
}

// HelpGroup is the pane's column of the help overlay.
func (m *Model) HelpGroup() screen.HelpGroup {
	k := m.Keys
	return screen.HelpGroup{Title: "LOG PANE", Keys: []key.Binding{k.Follow, k.Level, k.Wrap, k.Search, k.Next, k.Prev, k.PageUp, k.Bottom, k.Times, k.Clear}}
}
