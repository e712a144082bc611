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
	// Resolve reviews a multi-master conflict: conflict.Keep or
	// conflict.Other (conflict.Resolve); it returns what was done.
	Resolve func(ctx context.Context, c Conflict, choice string) (string, error)
}

// resolvedMsg is the result of a review.
type resolvedMsg struct {
	did string
	err error
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
	prompt    *screen.Prompt
	keys      struct{ Detail, Refresh, Keep, Other key.Binding }
}

// New makes the screen.
func New(env *screen.Env, deps Deps) *Model {
	m := &Model{env: env, deps: deps, filter: screen.Input{Prompt: "filter: "}}
	m.keys.Detail = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail + replica's row now"))
	m.keys.Refresh = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh"))
	m.keys.Keep = key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "accept the outcome "+screen.Asks))
	m.keys.Other = key.NewBinding(key.WithKeys("o"), key.WithHelp("o", "take the other version "+screen.Asks))
	m.keys.Keep.SetEnabled(!env.ReadOnly)
	m.keys.Other.SetEnabled(!env.ReadOnly)
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

// Capturing is true while filtering or asking.
func (m *Model) Capturing() bool { return m.filtering || m.prompt != nil }

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
	case resolvedMsg:
		if msg.err != nil {
			return m, screen.Flash(screen.Bad, msg.err.Error())
		}
		return m, tea.Batch(screen.Flash(screen.Good, msg.did), m.load())
	case tea.KeyPressMsg:
		if m.prompt != nil {
			return m, screen.KeyToPrompt(&m.prompt, msg)
		}
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
		case key.Matches(msg, m.keys.Keep), key.Matches(msg, m.keys.Other):
			if m.cursor < len(rows) {
				return m, m.ask(rows[m.cursor], key.Matches(msg, m.keys.Other))
			}
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

// ask opens the confirmation of a review of c: keep its outcome, or
// (other) write the version that lost.
func (m *Model) ask(c Conflict, other bool) tea.Cmd {
	switch {
	case c.Outcome == "":
		return screen.Flash(screen.Info, "a one-way replica follows its origin: fix the row there (or pgreplica sync the table)")
	case c.ReviewedAt != nil:
		return screen.Flash(screen.Info, fmt.Sprintf("conflict %d was reviewed already (%s)", c.ID, c.Review))
	case m.deps.Resolve == nil:
		return nil
	}
	choice, title := conflict.Keep, fmt.Sprintf("Accept the outcome of conflict %d?", c.ID)
	body := []string{fmt.Sprintf("%s stays as the nodes have it (%s); the conflict is marked reviewed on every node.", keyText(c.Key), outcomeText(c))}
	if other {
		choice, title = conflict.Other, fmt.Sprintf("Take the other version of %s?", keyText(c.Key))
		body = []string{
			fmt.Sprintf("Writes the version that lost (%s) on %s as an ordinary change: it is captured and reaches and wins on every node; the conflict is marked reviewed.", otherName(c), targetOf(c)),
			"Undo: the version now kept is in this conflict; take it back the same way.",
		}
	}
	f, env := m.deps.Resolve, m.env
	m.prompt = &screen.Prompt{Level: 2, Title: title, Body: body, OnYes: func() tea.Msg {
		env.Audit("resolve conflict", "replica", c.Replica, "conflict", c.ID, "choice", choice)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		did, err := f(ctx, c, choice)
		return resolvedMsg{did: did, err: err}
	}}
	return nil
}

// targetOf is the node a multi-master conflict was met on ("a->b": b).
func targetOf(c Conflict) string {
	if _, to, ok := strings.Cut(c.Replica, "->"); ok {
		return "node " + to
	}
	return c.Replica
}

// sourceOf is the node whose change met it ("a->b": a).
func sourceOf(c Conflict) string {
	if from, _, ok := strings.Cut(c.Replica, "->"); ok {
		return "node " + from
	}
	return "the origin"
}

func outcomeText(c Conflict) string {
	won := conflict.Flatten(c.Winner)["n"]
	if c.Outcome == "applied" {
		return fmt.Sprintf("%s's change applied, won by %s under %s", sourceOf(c), won, c.Policy)
	}
	return fmt.Sprintf("%s's row kept, won by %s under %s", targetOf(c), won, c.Policy)
}

func otherName(c Conflict) string {
	if c.Outcome == "applied" {
		return targetOf(c) + "'s row as it was"
	}
	return sourceOf(c) + "'s change"
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
	if m.env.Config != nil && m.env.Config.MultiMaster() {
		sum = fmt.Sprintf(" %d recorded · newest first · concurrent changes of a row on two nodes: the winner is kept on every node", len(m.list))
	}
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
	if m.prompt != nil {
		return screen.Overlay(strings.Join(lines, "\n"), m.prompt.View(t, w-4), w, h)
	}
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
	if c.Outcome != "" {
		text = append(text[:6], "", c.Kind+": "+outcomeText(c)+".", "", "COLUMNS (local "+targetOf(c)+" · remote "+sourceOf(c)+")")
		local, remote := conflict.Flatten(c.LocalRow), conflict.Flatten(c.Data)
		seen := map[string]bool{}
		for _, row := range []map[string]string{local, remote} {
			for _, col := range slices.Sorted(mapsKeys(row)) {
				if !seen[col] {
					seen[col] = true
					text = append(text, "  "+col+": "+local[col]+" · "+remote[col])
				}
			}
		}
		return fmt.Sprintf("conflict %d on %s", c.ID, c.Replica), text, true
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
	if c.Outcome != "" {
		return append(out, m.sideBySide(c, w)...)
	}
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

// sideBySide is a multi-master conflict's two rows, column by column: the
// row the target node had (LOCAL) and the change that came (REMOTE), with
// the outcome and its review.
func (m *Model) sideBySide(c Conflict, w int) []string {
	t := m.env.Theme
	state := "not reviewed: a accepts it, o takes the other version"
	if c.ReviewedAt != nil {
		state = "reviewed (" + c.Review + ")"
	}
	var out []string
	for _, l := range screen.Wrap(fmt.Sprintf("%s: %s · %s", c.Kind, outcomeText(c), state), w-2) {
		out = append(out, " "+l)
	}
	local, remote := conflict.Flatten(c.LocalRow), conflict.Flatten(c.Data)
	colW := max((w-3-16)/2, 10)
	out = append(out, t.Title.Render("   "+screen.Fit("COLUMN", 16)+screen.Fit("LOCAL "+strings.TrimPrefix(targetOf(c), "node "), colW)+
		"REMOTE "+strings.TrimPrefix(sourceOf(c), "node ")))
	names := map[string]bool{}
	for k := range local {
		names[k] = true
	}
	for k := range remote {
		names[k] = true
	}
	cols := slices.Sorted(func(yield func(string) bool) {
		for k := range names {
			if !yield(k) {
				return
			}
		}
	})
	show := func(row map[string]string, col, raw string) string {
		switch {
		case raw == "":
			return "<no row>"
		default:
			if v, ok := row[col]; ok {
				return v
			}
			return "-"
		}
	}
	for i, col := range cols {
		if i == 5 {
			out = append(out, fmt.Sprintf("   … %d more columns (enter shows all)", len(cols)-5))
			break
		}
		l, r := show(local, col, c.LocalRow), show(remote, col, c.Data)
		mark := " "
		if l != r {
			mark = "≠"
		}
		out = append(out, "  "+mark+screen.Fit(col, 16)+screen.Fit(l, colW)+screen.Fit(r, colW))
	}
	if len(cols) == 0 {
		out = append(out, "   "+screen.Fit("(row)", 16)+screen.Fit(show(local, "", c.LocalRow), colW)+show(remote, "", c.Data))
	}
	return out
}

// ShortHelp is the footer.
func (m *Model) ShortHelp() []key.Binding {
	if m.filtering {
		return nil
	}
	keys := []key.Binding{screen.ShortKey(m.keys.Detail, "detail"), screen.ShortKey(screen.Up, "move"), screen.Filter, m.keys.Refresh}
	if rows := m.visible(); m.cursor < len(rows) && rows[m.cursor].Outcome != "" && rows[m.cursor].ReviewedAt == nil {
		keys = append(keys, screen.ShortKey(m.keys.Keep, "accept"), screen.ShortKey(m.keys.Other, "other"))
	}
	return keys
}

// Help is the overlay's part.
func (m *Model) Help() []screen.HelpGroup {
	return []screen.HelpGroup{{Title: "CONFLICTS", Keys: []key.Binding{screen.Up, screen.Top, m.keys.Detail, screen.Filter, m.keys.Refresh, m.keys.Keep, m.keys.Other}}}
}

var _ = errors.New
