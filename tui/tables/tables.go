// Package tables is the Tables screen: every matched table of the origin
// with its key, capture status, copy state, pending events and last event;
// filter, sort, and install or remove capture on the selected table.
package tables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/capture"
	"pgreplica/core/copystate"
	"pgreplica/core/pg"
	"pgreplica/core/rule"
	"pgreplica/tui/layout"
	"pgreplica/tui/screen"
)

// Deps are the core calls the screen makes.
type Deps struct {
	// List reads the tables (capture.ListTables on the origin).
	List func(ctx context.Context) ([]capture.TableInfo, error)
	// Install and Remove add or remove capture on one table, reporting
	// one line per thing done.
	Install func(ctx context.Context, t pg.Table, report func(string)) error
	Remove  func(ctx context.Context, t pg.Table, report func(string)) error
}

// Keys of the screen.
type Keys struct {
	Install, Remove, Filter, Sort, Pause, Refresh key.Binding
}

func newKeys(readOnly bool) Keys {
	k := Keys{
		Install: key.NewBinding(key.WithKeys("i"), key.WithHelp("i", "install capture "+screen.Asks)),
		Remove:  key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "remove capture "+screen.Asks)),
		Filter:  key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Sort:    key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort")),
		Pause:   key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause")),
		Refresh: key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh")),
	}
	k.Install.SetEnabled(!readOnly)
	k.Remove.SetEnabled(!readOnly)
	return k
}

// Excluded is the status the screen gives a table of the origin that the
// config does not replicate (tables.include/exclude); listed last, with why.
const Excluded capture.Status = "excluded"

// Sort orders.
var sorts = []string{"status", "name", "pending"}

// Model is the Tables screen.
type Model struct {
	env  *screen.Env
	deps Deps
	keys Keys

	tables   []capture.TableInfo
	states   map[string][]string // table -> "replica:state"
	loaded   bool
	err      error
	loadedAt time.Time
	loading  bool

	sortBy    int
	filter    screen.Input
	filtering bool
	cursor    int
	offset    int
	selected  string // identity of the cursor row
	paused    bool

	prompt  *screen.Prompt
	working string
	lastH   int
}

// New makes the screen.
func New(env *screen.Env, deps Deps) *Model {
	// A multi-master set's tables are installed on every node at once, by
	// pgreplica install: no per-table install or remove here.
	fixed := env.ReadOnly || env.Config != nil && env.Config.MultiMaster()
	return &Model{env: env, deps: deps, keys: newKeys(fixed), filter: screen.Input{Prompt: "filter: "}}
}

// LoadedMsg is the result of reading the tables.
type LoadedMsg struct {
	Tables []capture.TableInfo
	Err    error
	At     time.Time
}

type actionDoneMsg struct {
	lines []string
	err   error
	what  string
}

// Init loads the tables.
func (m *Model) Init() tea.Cmd { return m.load() }

func (m *Model) load() tea.Cmd {
	if m.deps.List == nil || m.loading {
		return nil
	}
	m.loading = true
	list := m.deps.List
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t, err := list(ctx)
		return LoadedMsg{Tables: t, Err: err, At: time.Now()}
	}
}

// Capturing is true while the filter or a prompt has the keyboard.
func (m *Model) Capturing() bool { return m.filtering || m.prompt != nil }

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (screen.Screen, tea.Cmd) {
	switch msg := msg.(type) {
	case LoadedMsg:
		m.loading = false
		if m.paused {
			return m, nil
		}
		m.err = msg.Err
		if msg.Err == nil {
			m.tables, m.loaded, m.loadedAt = m.markExcluded(msg.Tables), true, msg.At
			m.keepCursor()
		}
		return m, nil
	case screen.ReportMsg:
		if msg.Err == nil && !m.paused {
			m.states = map[string][]string{}
			for _, r := range msg.Report.Replicas {
				for t, st := range r.TableStates {
					m.states[t] = append(m.states[t], r.Name+":"+string(st))
				}
			}
		}
		return m, nil
	case screen.TickMsg:
		if !m.paused && msg.At.Unix()%5 == 0 {
			return m, m.load()
		}
		return m, nil
	case actionDoneMsg:
		m.working = ""
		cmds := []tea.Cmd{m.load()}
		if msg.err != nil {
			cmds = append(cmds, screen.Flash(screen.Bad, msg.what+": "+msg.err.Error()))
		} else {
			last := msg.what + " done"
			if len(msg.lines) > 0 {
				last = msg.lines[len(msg.lines)-1]
			}
			cmds = append(cmds, screen.Flash(screen.Good, last))
		}
		return m, tea.Batch(cmds...)
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m *Model) key(msg tea.KeyPressMsg) (screen.Screen, tea.Cmd) {
	if m.prompt != nil {
		return m, screen.KeyToPrompt(&m.prompt, msg)
	}
	if m.filtering {
		switch msg.String() {
		case "enter":
			m.filtering = false
		case "esc":
			m.filtering = false
			m.filter.Value = ""
		default:
			m.filter.Update(msg)
		}
		m.cursor = 0
		m.keepCursorIn(m.visible())
		return m, nil
	}
	rows := m.visible()
	if c, ok := screen.MoveCursor(msg, m.cursor, len(rows), m.lastH); ok {
		m.cursor = c
		if c < len(rows) {
			m.selected = rows[c].Table.String()
		}
		return m, nil
	}
	switch {
	case key.Matches(msg, m.keys.Filter):
		m.filtering = true
		return m, nil
	case msg.String() == "esc" && m.filter.Value != "":
		m.filter.Value = ""
		m.keepCursor()
		return m, nil
	case key.Matches(msg, m.keys.Sort):
		m.sortBy = (m.sortBy + 1) % len(sorts)
		m.keepCursor()
		return m, screen.Flash(screen.Info, "sorted by "+sorts[m.sortBy])
	case key.Matches(msg, m.keys.Pause):
		m.paused = !m.paused
		if m.paused {
			return m, screen.Flash(screen.Info, "updates paused · p resumes")
		}
		return m, tea.Batch(m.load(), screen.Flash(screen.Info, "updates resumed"))
	case key.Matches(msg, m.keys.Refresh):
		return m, m.load()
	case key.Matches(msg, screen.DetailKey):
		if _, ok := m.current(rows); ok {
			return m, screen.OpenDetail
		}
		return m, nil
	case key.Matches(msg, m.keys.Install):
		return m, m.askInstall(rows)
	case key.Matches(msg, m.keys.Remove):
		return m, m.askRemove(rows)
	}
	return m, nil
}

// markExcluded gives the tables the config does not replicate the
// status Excluded.
func (m *Model) markExcluded(in []capture.TableInfo) []capture.TableInfo {
	cfg := m.env.Config
	if cfg == nil {
		return in
	}
	out := make([]capture.TableInfo, len(in))
	for i, t := range in {
		if t.Status == capture.Missing && !cfg.Tables.Match(t.Table.Schema, t.Table.Name) {
			t.Status = Excluded
		}
		out[i] = t
	}
	return out
}

func (m *Model) current(rows []capture.TableInfo) (capture.TableInfo, bool) {
	if m.cursor < 0 || m.cursor >= len(rows) {
		return capture.TableInfo{}, false
	}
	return rows[m.cursor], true
}

func (m *Model) askInstall(rows []capture.TableInfo) tea.Cmd {
	t, ok := m.current(rows)
	switch {
	case !ok:
		return nil
	case t.Status == capture.NoKey:
		return screen.Flash(screen.Warning, t.Table.String()+" has no primary key: add one first, then press i")
	case t.Status == capture.Installed:
		return screen.Flash(screen.Info, t.Table.String()+" is already captured")
	case t.Status == Excluded:
		return screen.Flash(screen.Warning, t.Table.String()+" is not replicated by the config: name it in tables.include first")
	}
	m.prompt = &screen.Prompt{
		Level: 2,
		Title: "Install capture on " + t.Table.String() + "?",
		Body: []string{
			"Creates the pgreplica capture trigger on " + t.Table.String() + " in the origin, after checking that every replica has the table.",
			"Its changes are replicated from now on; copy existing rows with pgreplica sync. Undo: d removes the trigger.",
		},
		OnYes: m.run("install capture on "+t.Table.String(), t.Table, m.deps.Install),
	}
	return nil
}

func (m *Model) askRemove(rows []capture.TableInfo) tea.Cmd {
	t, ok := m.current(rows)
	if !ok {
		return nil
	}
	if t.Status != capture.Installed && t.Status != capture.Disabled {
		return screen.Flash(screen.Info, t.Table.String()+" is not captured")
	}
	m.prompt = &screen.Prompt{
		Level: 2,
		Title: "Remove capture from " + t.Table.String() + "?",
		Body: []string{
			"Drops the capture trigger of " + t.Table.String() + " on the origin: its changes are no longer replicated. Events already captured are still applied.",
			"Undo: i installs it again (then re-copy the table).",
		},
		OnYes: m.run("remove capture from "+t.Table.String(), t.Table, m.deps.Remove),
	}
	return nil
}

func (m *Model) run(what string, t pg.Table, f func(context.Context, pg.Table, func(string)) error) tea.Cmd {
	m.working = what
	env := m.env
	return func() tea.Msg {
		if f == nil {
			return actionDoneMsg{what: what, err: fmt.Errorf("not available")}
		}
		env.Audit("tui: "+what, "table", t.String())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var lines []string
		err := f(ctx, t, func(s string) { lines = append(lines, s) })
		return actionDoneMsg{what: what, lines: lines, err: err}
	}
}

// visible is the filtered, sorted list.
func (m *Model) visible() []capture.TableInfo {
	var out []capture.TableInfo
	f := strings.ToLower(m.filter.Value)
	for _, t := range m.tables {
		if f == "" || strings.Contains(strings.ToLower(t.Table.String()), f) || strings.Contains(strings.ToLower(Word(t.Status)), f) {
			out = append(out, t)
		}
	}
	switch sorts[m.sortBy] {
	case "status":
		capture.SortByStatus(out)
		slices.SortStableFunc(out, func(a, b capture.TableInfo) int { return boolCmp(a.Status == Excluded, b.Status == Excluded) })
	case "name":
		slices.SortStableFunc(out, func(a, b capture.TableInfo) int { return strings.Compare(a.Table.String(), b.Table.String()) })
	case "pending":
		slices.SortStableFunc(out, func(a, b capture.TableInfo) int {
			if a.Pending != b.Pending {
				return int(b.Pending - a.Pending)
			}
			return strings.Compare(a.Table.String(), b.Table.String())
		})
	}
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// keepCursor puts the cursor back on the selected table after a reload.
func (m *Model) keepCursor() { m.keepCursorIn(m.visible()) }

func (m *Model) keepCursorIn(rows []capture.TableInfo) {
	if m.selected != "" {
		for i, r := range rows {
			if r.Table.String() == m.selected {
				m.cursor = i
				return
			}
		}
	}
	m.cursor = min(m.cursor, len(rows)-1)
	m.cursor = max(m.cursor, 0)
	if m.cursor < len(rows) {
		m.selected = rows[m.cursor].Table.String()
	}
}

// Word is a status as the screen writes it.
func Word(s capture.Status) string {
	switch s {
	case capture.Installed:
		return "OK"
	case capture.Missing:
		return "MISSING"
	case capture.NoKey:
		return "NO PK"
	case capture.Disabled:
		return "DISABLED"
	case capture.Stale:
		return "STALE"
	case capture.Removed:
		return "RE-COPY"
	case Excluded:
		return "EXCLUDED"
	}
	return strings.ToUpper(string(s))
}

// ShortHelp is the footer.
func (m *Model) ShortHelp() []key.Binding {
	if m.prompt != nil || m.filtering {
		return nil
	}
	k := m.keys
	return []key.Binding{screen.ShortKey(screen.DetailKey, "detail"), screen.ShortKey(k.Install, "install "+screen.Asks), screen.ShortKey(k.Remove, "remove "+screen.Asks),
		screen.ShortKey(screen.Up, "move"), k.Filter, k.Sort, k.Pause, k.Refresh}
}

// Help is the ? overlay's part.
func (m *Model) Help() []screen.HelpGroup {
	return []screen.HelpGroup{
		{Title: "LISTS", Keys: []key.Binding{screen.Up, screen.Top, screen.HalfDown, screen.DetailKey, m.keys.Filter, m.keys.Sort, m.keys.Pause, m.keys.Refresh}},
		{Title: "TABLES", Keys: []key.Binding{m.keys.Install, m.keys.Remove}},
	}
}

// View renders the screen.
func (m *Model) View(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	now := m.env.Now()
	if !m.loaded {
		if m.err != nil {
			return errorView(m, w, h)
		}
		return screen.Block(" reading tables from the origin…", w, h)
	}
	rows := m.visible()
	var lines []string
	// Summary.
	counts := map[capture.Status]int{}
	for _, r := range m.tables {
		counts[r.Status]++
	}
	sum := fmt.Sprintf(" %d tables · %d OK · %d MISSING · %d NO PK · %d DISABLED", len(m.tables)-counts[Excluded],
		counts[capture.Installed], counts[capture.Missing], counts[capture.NoKey], counts[capture.Disabled])
	if n := counts[Excluded]; n > 0 {
		sum += fmt.Sprintf(" · %d excluded", n)
	}
	right := "sort: " + sorts[m.sortBy]
	if m.filter.Value != "" || m.filtering {
		right += " · filter " + m.filter.Value
	}
	if m.paused {
		right = t.Warn.Render("PAUSED") + " · " + right
	}
	lines = append(lines, screen.Fit(sum, w-lenOf(right)-1)+" "+right)
	if m.filtering {
		lines = append(lines, " "+m.filter.View(true))
	}
	// Columns.
	wide := w >= layout.WideWidth
	// 3 + status 11 + name + 1 + key 12 + pending 8 + 2 + state 12 + last 10
	nameW := max(w-59, 12)
	head := "   " + screen.Fit("STATUS", 10) + " " + screen.Fit("TABLE", nameW) + " " + screen.Fit("KEY", 12) + screen.FitRight("PENDING", 8) + "  " + screen.Fit("STATE", 12) + screen.Fit("LAST EVENT", 10)
	lines = append(lines, t.Title.Render(screen.Fit(head, w)))
	detail := m.detail(rows, w)
	listH, _ := layout.Split(h-len(lines), len(detail)+1, 5)
	m.lastH = listH
	m.offset = layout.Window(m.offset, m.cursor, len(rows), listH)
	for i := m.offset; i < min(len(rows), m.offset+listH); i++ {
		r := rows[i]
		cur := "  "
		if i == m.cursor {
			cur = g.Cursor + " "
		}
		key := "–"
		if len(r.Key) > 0 {
			key = strings.Join(r.Key, ",")
		}
		pend, last := "–", "–"
		if r.Status == capture.Installed || r.Status == capture.Disabled || r.Pending > 0 {
			pend = screen.Count(r.Pending)
			last = screen.Ago(now, r.Last)
		}
		state := m.stateOf(r)
		word := Word(r.Status)
		name := r.Table.String()
		if len(m.rules(r.Table)) > 0 {
			name = screen.Fit(name, nameW-2) + " ƒ" // a replica has a rule for it (detail says which)
		}
		line := " " + cur + t.StateStyle(word).Render(screen.Fit(word, 10)) + " " + screen.Fit(name, nameW) + " " +
			screen.Fit(key, 12) + screen.FitRight(pend, 8) + "  " + screen.Fit(state, 12) + screen.Fit(last, 10)
		if i == m.cursor {
			line = t.Selected.Render(screen.Fit(stripANSI(line), w))
		}
		lines = append(lines, line)
	}
	if len(rows) == 0 {
		if len(m.tables) == 0 {
			lines = append(lines, "   no tables match tables.include/exclude in the config")
		} else {
			lines = append(lines, "   no table matches the filter · esc clears it")
		}
	}
	for len(lines) < h-len(detail) {
		lines = append(lines, "")
	}
	lines = append(lines, detail...)
	body := strings.Join(lines, "\n")
	if m.prompt != nil {
		return screen.Overlay(body, m.prompt.View(t, w-4), w, h)
	}
	_ = wide
	return screen.Block(body, w, h)
}

func (m *Model) stateOf(r capture.TableInfo) string {
	if st := m.states[r.Table.String()]; len(st) > 0 {
		seen := map[string]bool{}
		var words []string
		for _, s := range st {
			w := s[strings.LastIndexByte(s, ':')+1:]
			if !seen[w] {
				seen[w] = true
				words = append(words, w)
			}
		}
		return strings.Join(words, ",")
	}
	if r.Status == capture.Installed {
		return string(copystate.Replicating)
	}
	return "–"
}

// Detail is the selected table, whole.
func (m *Model) Detail() (string, []string, bool) {
	r, ok := m.current(m.visible())
	if !ok {
		return "", nil, false
	}
	key := "– (none)"
	if len(r.Key) > 0 {
		key = strings.Join(r.Key, ", ")
	}
	text := []string{
		"status      " + Word(r.Status),
		"key         " + key,
		"copy state  " + m.stateOf(r),
	}
	if r.Status == capture.Installed || r.Status == capture.Disabled || r.Pending > 0 {
		text = append(text, "pending     "+screen.Count(r.Pending)+" events not yet applied by the slowest replica",
			"last event  "+screen.Ago(m.env.Now(), r.Last))
	}
	for _, s := range m.states[r.Table.String()] {
		i := strings.LastIndexByte(s, ':')
		text = append(text, "replica     "+s[:i]+": "+s[i+1:])
	}
	for _, l := range m.rules(r.Table) {
		text = append(text, "rule        "+l)
	}
	text = append(text, "", m.explain(r))
	return "table " + r.Table.String(), text, true
}

func (m *Model) explain(r capture.TableInfo) string {
	key := strings.Join(r.Key, ", ")
	switch r.Status {
	case capture.Installed:
		return fmt.Sprintf("Captured: every INSERT, UPDATE and DELETE is logged and replayed on each replica. Key: %s (primary key). %s events waiting for the slowest replica.", key, screen.Count(r.Pending))
	case capture.Missing:
		return fmt.Sprintf("The capture trigger is missing: changes to this table are NOT being replicated. Key: %s. Press i to install it (then copy existing rows with pgreplica sync).", key)
	case capture.NoKey:
		return "No primary key (or unique NOT NULL index): UPDATE and DELETE could not be matched on the replica, so it cannot be captured. Add a primary key, or exclude the table in tables.exclude."
	case capture.Disabled:
		return "The capture trigger exists but is disabled (ALTER TABLE … DISABLE TRIGGER): changes are NOT being captured. Enable it with ALTER TABLE … ENABLE TRIGGER, or press i to reinstall."
	case Excluded:
		return m.whyExcluded(r)
	}
	return "Status " + Word(r.Status) + "."
}

func (m *Model) detail(rows []capture.TableInfo, w int) []string {
	t := m.env.Theme
	r, ok := m.current(rows)
	if !ok {
		return nil
	}
	title := t.Rule.Render(screen.Rule(t.Glyphs.HRule, r.Table.String(), w))
	var text string
	key := strings.Join(r.Key, ", ")
	keyKind := "primary key"
	if r.KeyIsUnique {
		keyKind = "unique index on NOT NULL columns"
	}
	switch r.Status {
	case capture.Installed:
		text = fmt.Sprintf("Captured: every INSERT, UPDATE and DELETE is logged and replayed on each replica. Key: %s (%s). %s events waiting for the slowest replica.", key, keyKind, screen.Count(r.Pending))
	case capture.Stale:
		text = fmt.Sprintf("Capture is stale: the table changed (ALTER TABLE) since its capture function was made. Its changes are still captured, more slowly, but a column added since is not carried. Run pgreplica install. Key: %s (%s).", key, keyKind)
	case capture.Removed:
		text = "Capture of this table was removed: its replicas missed the changes made since and are not kept in step. Copy it again with pgreplica add-table --sync " + r.Table.String() + " (or --no-sync to accept the difference)."
	case capture.Missing:
		fix := "Press i to install it (then copy existing rows with pgreplica sync)."
		if m.env.ReadOnly {
			fix = "This session is read-only: an operator installs it with pgreplica add-table " + r.Table.String() + "."
		}
		text = fmt.Sprintf("The capture trigger is missing: changes to this table are NOT being replicated. Key: %s. %s", key, fix)
	case capture.NoKey:
		text = "No primary key (or unique NOT NULL index): UPDATE and DELETE could not be matched on the replica, so it cannot be captured. Add a primary key, or exclude the table in tables.exclude."
	case Excluded:
		text = m.whyExcluded(r)
	case capture.Disabled:
		text = "The capture trigger exists but is disabled (ALTER TABLE … DISABLE TRIGGER): changes are NOT being captured. Enable it with ALTER TABLE … ENABLE TRIGGER, or press i to reinstall."
		if m.env.ReadOnly {
			text = strings.TrimSuffix(text, ", or press i to reinstall.") + "."
		}
	}
	if rules := m.rules(r.Table); len(rules) > 0 {
		text += " Rules (ƒ): " + strings.Join(rules, " · ") + "."
	}
	if m.working != "" {
		text = t.Glyphs.Dot + " " + m.working + "…"
	}
	out := []string{title}
	for _, l := range screen.Wrap(text, w-2) {
		out = append(out, " "+l)
	}
	return out
}

func (m *Model) whyExcluded(r capture.TableInfo) string {
	why := "the config does not select it"
	if cfg := m.env.Config; cfg != nil {
		if w := cfg.Tables.Why(r.Table.Schema, r.Table.Name); w != "" {
			why = w
		}
	}
	return "Not replicated: " + why + ". To replicate it, name it in tables.include of the config, then pgreplica add-table " + r.Table.String() + " --sync."
}

func errorView(m *Model, w, h int) string {
	t := m.env.Theme
	lines := []string{"", " " + t.Err.Render(t.Glyphs.Cross+" cannot read the tables of the origin"), ""}
	for _, l := range screen.Wrap(m.err.Error(), w-4) {
		lines = append(lines, "   "+l)
	}
	lines = append(lines, "", " Try: check that the origin is running and reachable (pgreplica check),", "      then press r to retry.")
	return screen.Block(strings.Join(lines, "\n"), w, h)
}

// rules are the replicas' rules for table t in the config, one
// "replica: summary" each.
func (m *Model) rules(t pg.Table) []string {
	if m.env.Config == nil {
		return nil
	}
	var out []string
	for _, r := range m.env.Config.Replicas {
		if tr := rule.Of(r, t); tr != nil {
			out = append(out, r.Name+": "+tr.Summary())
		}
	}
	return out
}
