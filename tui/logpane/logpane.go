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
	Follow, Level, Search, Next, Prev, Up, Down, PageUp, PageDown, Bottom, Times, Clear key.Binding
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
	}
}

// Model is the pane.
type Model struct {
	th      *theme.Theme
	Keys    Keys
	records []logring.Record

	follow   bool
	paused   bool
	level    slog.Level
	scope    string // replica name, "" = all
	search   screen.Input
	inSearch bool
	noTimes  bool
	top      int // first shown line of the filtered list when not following
	newLines int
	height   int
	match    int // index (in filtered) of the current match, -1 none
}

// New makes a pane that follows.
func New(th *theme.Theme) *Model {
	return &Model{th: th, Keys: DefaultKeys(), follow: true, level: slog.LevelInfo, search: screen.Input{Prompt: "search: "}, match: -1}
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
	if r.Level < m.level {
		return false
	}
	if m.scope != "" {
		if v := r.Get("replica"); v != m.scope && r.Get("sub") != m.scope {
			return false
		}
	}
	return true
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
		m.follow, m.newLines = true, 0
	case key.Matches(msg, m.Keys.Times):
		m.noTimes = !m.noTimes
	case key.Matches(msg, m.Keys.Clear):
		m.records, m.top, m.newLines, m.match = nil, 0, 0, -1
	case useUpDown && key.Matches(msg, m.Keys.Up):
		scroll(-1)
	case useUpDown && key.Matches(msg, m.Keys.Down):
		scroll(1)
	default:
		return false, nil
	}
	return true, nil
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

// View renders the pane with its title into w x h.
func (m *Model) View(w, h int) string {
	t := m.th
	g := t.Glyphs
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
	top := m.top
	if m.follow {
		top = max(len(rows)-bodyH, 0)
	}
	top = min(top, max(len(rows)-bodyH, 0))
	for i := top; i < min(len(rows), top+bodyH); i++ {
		r := rows[i]
		s := " " + screen.Fit(m.line(r), w-1)
		switch {
		case i == m.match:
			s = t.Selected.Render(s)
		case r.Level >= slog.LevelError:
			s = t.Err.Render(s)
		case r.Level >= slog.LevelWarn:
			s = t.Warn.Render(s)
		case r.Level < slog.LevelInfo:
			s = t.Dim.Render(s)
		}
		lines = append(lines, s)
	}
	if len(rows) == 0 {
		lines = append(lines, t.Dim.Render(" no log records yet"))
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
	return screen.HelpGroup{Title: "LOG PANE", Keys: []key.Binding{k.Follow, k.Level, k.Search, k.Next, k.PageUp, k.Bottom, k.Times, k.Clear}}
}
