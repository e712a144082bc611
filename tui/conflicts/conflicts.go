// Package conflicts is the Conflicts screen: the changes each replica
// could not apply as captured (pgreplica.conflict), with detail.
package conflicts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/conflict"
	"pgreplica/tui/layout"
	"pgreplica/tui/screen"
)

// Deps are the reads the screen makes.
type Deps struct {
	Read func(ctx context.Context) ([]Conflict, []error)
	Row  func(ctx context.Context, c Conflict) (map[string]string, error)
}

// LoadedMsg is the result of reading the conflicts.
type LoadedMsg struct {
	Conflicts []Conflict
	Errs      []error
}

type rowMsg struct {
	id  string
	row map[string]string
	err error
}

// Model is the Conflicts screen.
type Model struct {
	env       *screen.Env
	deps      Deps
	list      []Conflict
	errs      []error
	loaded    bool
	loading   bool
	cursor    int
	offset    int
	filter    screen.Input
	filtering bool
	rowID     string
	row       map[string]string
	rowErr    error
	rowLoaded bool
	lastH     int
	keys      struct{ Detail, Refresh key.Binding }
}

// New makes the screen.
func New(env *screen.Env, deps Deps) *Model {
	m := &Model{env: env, deps: deps, filter: screen.Input{Prompt: "filter: "}}
	m.keys.Detail = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail + replica's row now"))
	m.keys.Refresh = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh"))
	return m
}

// Count is the number of conflicts read (the tab's badge).
func (m *Model) Count() int { return len(m.list) }

// Init reads the conflicts.
func (m *Model) Init() tea.Cmd { return m.load() }

func (m *Model) load() tea.Cmd {
	if m.deps.Read == nil || m.loading {
		return nil
	}
	m.loading = true
	read := m.deps.Read
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, errs := read(ctx)
		return LoadedMsg{Conflicts: c, Errs: errs}
	}
}

// Capturing is true while filtering.
func (m *Model) Capturing() bool { return m.filtering }

func ident(c Conflict) string { return c.Replica + "/" + fmt.Sprint(c.ID) }

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (screen.Screen, tea.Cmd) {
	switch msg := msg.(type) {
	case LoadedMsg:
		m.loading = false
		var sel string
		if rows := m.visible(); m.cursor < len(rows) {
			sel = ident(rows[m.cursor])
		}
		m.list, m.errs, m.loaded = msg.Conflicts, msg.Errs, true
		for i, c := range m.visible() {
			if ident(c) == sel {
				m.cursor = i
			}
		}
		return m, nil
	case screen.TickMsg:
		if msg.At.Unix()%5 == 0 {
			return m, m.load()
		}
	case rowMsg:
		if msg.id == m.rowID {
			m.row, m.rowErr, m.rowLoaded = msg.row, msg.err, true
		}
	case tea.KeyPressMsg:
		if m.filtering {
			switch msg.String() {
			case "enter":
				m.filtering = false
			case "esc":
				m.filtering, m.filter.Value = false, ""
			default:
				m.filter.Update(msg)
			}
			m.cursor = 0
			return m, nil
		}
		rows := m.visible()
		if c, ok := screen.MoveCursor(msg, m.cursor, len(rows), m.lastH); ok {
			m.cursor = c
			return m, nil
		}
		switch {
		case key.Matches(msg, screen.Filter):
			m.filtering = true
		case key.Matches(msg, m.keys.Refresh):
			return m, m.load()
		case key.Matches(msg, m.keys.Detail):
			if m.cursor < len(rows) && m.deps.Row != nil {
				c := rows[m.cursor]
				m.rowID, m.rowLoaded, m.row, m.rowErr = ident(c), false, nil, nil
				f := m.deps.Row
				return m, tea.Batch(screen.OpenDetail, func() tea.Msg {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					r, err := f(ctx, c)
					return rowMsg{id: ident(c), row: r, err: err}
				})
			}
			if m.cursor < len(rows) {
				return m, screen.OpenDetail
			}
		}
	}
	return m, nil
}

func (m *Model) visible() []Conflict {
	f := strings.ToLower(m.filter.Value)
	if f == "" {
		return m.list
	}
	var out []Conflict
	for _, c := range m.list {
		if strings.Contains(strings.ToLower(c.Replica+" "+c.Table.String()+" "+c.Kind+" "+c.Key), f) {
			out = append(out, c)
		}
	}
	return out
}

// View renders the screen.
func (m *Model) View(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	if !m.loaded {
		return screen.Block(" reading conflicts from the replicas…", w, h)
	}
	rows := m.visible()
	m.cursor = min(m.cursor, max(len(rows)-1, 0))
	var lines []string
	sum := fmt.Sprintf(" %d recorded · newest first · an UPDATE or DELETE that found no row is applied as a no-op and recorded here", len(m.list))
	if m.filtering || m.filter.Value != "" {
		sum = " " + m.filter.View(m.filtering)
	}
	lines = append(lines, screen.Fit(sum, w))
	for _, err := range m.errs {
		for i, l := range screen.Wrap(g.Cross+" "+err.Error(), w-3) {
			if i > 0 {
				l = "  " + l
			}
			lines = append(lines, " "+t.Err.Render(l))
		}
	}
	tableW := max(w-2-7-10-12-18-16, 12)
	head := "   " + screen.Fit("#", 7) + screen.Fit("WHEN", 10) + screen.Fit("REPLICA", 12) + screen.Fit("TABLE", tableW) + screen.Fit("KIND", 18) + "KEY"
	lines = append(lines, t.Title.Render(screen.Fit(head, w)))
	if len(rows) == 0 {
		lines = append(lines, "", "   "+t.OK.Render(g.Check+" no conflicts: every change was applied as captured"))
		return screen.Block(strings.Join(lines, "\n"), w, h)
	}
	detail := m.detail(rows[m.cursor], w)
	listH, _ := layout.Split(h-len(lines), len(detail), 4)
	m.lastH = listH
	m.offset = layout.Window(m.offset, m.cursor, len(rows), listH)
	for i := m.offset; i < min(len(rows), m.offset+listH); i++ {
		c := rows[i]
		cur := "  "
		if i == m.cursor {
			cur = g.Cursor + " "
		}
		line := " " + cur + screen.Fit(fmt.Sprint(c.ID), 7) + screen.Fit(c.At.In(m.env.Now().Location()).Format("15:04:05"), 10) +
			screen.Fit(c.Replica, 12) + screen.Fit(c.Table.String(), tableW) + screen.Fit(c.Kind, 18) + screen.Fit(keyText(c.Key), 16)
		if i == m.cursor {
			line = t.Selected.Render(screen.Fit(line, w))
		}
		lines = append(lines, line)
	}
	for len(lines) < h-len(detail) {
		lines = append(lines, "")
	}
	lines = append(lines, detail...)
	return screen.Block(strings.Join(lines, "\n"), w, h)
}

func keyText(k string) string {
	f := conflict.Flatten(k)
	var parts []string
	for _, c := range slices.Sorted(mapsKeys(f)) {
		parts = append(parts, c+"="+f[c])
	}
	if len(parts) == 0 {
		return k
	}
	return strings.Join(parts, ",")
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func opWord(op string) string {
	switch op {
	case "U":
		return "UPDATE"
	case "D":
		return "DELETE"
	case "I":
		return "INSERT"
	}
	return op
}

// Detail is the selected conflict, whole: every column as captured and
// as the replica holds it now (read on enter).
func (m *Model) Detail() (string, []string, bool) {
	rows := m.visible()
	if m.cursor >= len(rows) {
		return "", nil, false
	}
	c := rows[m.cursor]
	text := []string{
		"replica   " + c.Replica,
		"table     " + c.Table.String(),
		"change    " + opWord(c.Op) + " " + keyText(c.Key),
		"kind      " + c.Kind,
		"event     #" + fmt.Sprint(c.EventID) + " · tx " + c.Txid,
		"when      " + c.At.In(m.env.Now().Location()).Format("2006-01-02 15:04:05.000"),
		"",
		fmt.Sprintf("%s %s %s could not be applied on %s: %s. It was applied as a no-op; the replica may differ from the origin for this row until the table is copied again (pgreplica sync %s).",
			opWord(c.Op), c.Table, keyText(c.Key), c.Replica, c.Kind, c.Table),
	}
	data := conflict.Flatten(c.Data)
	if len(data) > 0 {
		text = append(text, "", "COLUMNS (captured → replica now)")
		for _, col := range slices.Sorted(mapsKeys(data)) {
			now := "reading…"
			switch {
			case m.rowID != ident(c):
				now = "not read"
			case m.rowErr != nil:
				now = "error: " + m.rowErr.Error()
			case m.rowLoaded && m.row == nil:
				now = "<no row>"
			case m.rowLoaded:
				now = m.row[col]
			}
			text = append(text, "  "+col+": "+data[col]+" → "+now)
		}
	}
	return fmt.Sprintf("conflict %d on %s", c.ID, c.Replica), text, true
}

func (m *Model) detail(c Conflict, w int) []string {
	t := m.env.Theme
	g := t.Glyphs
	title := fmt.Sprintf("%s conflict %d · event #%d · tx %s · %s ", g.HRule, c.ID, c.EventID, c.Txid, c.At.In(m.env.Now().Location()).Format("2006-01-02 15:04:05.000"))
	out := []string{t.Rule.Render(screen.Rule(g.HRule, strings.TrimPrefix(strings.TrimSpace(title), g.HRule+" "), w))}
	text := fmt.Sprintf("%s %s %s could not be applied on %s: %s. It was applied as a no-op; the replica may differ from the origin for this row until the table is copied again (pgreplica sync).",
		opWord(c.Op), c.Table, keyText(c.Key), c.Replica, c.Kind)
	for _, l := range screen.Wrap(text, w-2) {
		out = append(out, " "+l)
	}
	data := conflict.Flatten(c.Data)
	if len(data) > 0 {
		out = append(out, t.Title.Render("   "+screen.Fit("COLUMN", 18)+screen.Fit("CAPTURED", 28)+"REPLICA NOW"))
		cols := slices.Sorted(mapsKeys(data))
		for i, col := range cols {
			if i == 5 {
				out = append(out, fmt.Sprintf("   … %d more columns", len(cols)-5))
				break
			}
			now := "enter reads it"
			switch {
			case m.rowID == ident(c) && m.rowErr != nil:
				now = "error: " + m.rowErr.Error()
			case m.rowID == ident(c) && m.rowLoaded && m.row == nil:
				now = "<no row>"
			case m.rowID == ident(c) && m.rowLoaded:
				now = m.row[col]
			}
			out = append(out, "   "+screen.Fit(col, 18)+screen.Fit(data[col], 28)+now)
		}
	}
	return out
}

// ShortHelp is the footer.
func (m *Model) ShortHelp() []key.Binding {
	if m.filtering {
		return nil
	}
	return []key.Binding{screen.ShortKey(m.keys.Detail, "detail"), screen.ShortKey(screen.Up, "move"), screen.Filter, m.keys.Refresh}
}

// Help is the overlay's part.
func (m *Model) Help() []screen.HelpGroup {
	return []screen.HelpGroup{{Title: "CONFLICTS", Keys: []key.Binding{screen.Up, screen.Top, m.keys.Detail, screen.Filter, m.keys.Refresh}}}
}

var _ = errors.New
