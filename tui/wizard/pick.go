package wizard

import (
	"context"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/tui/layout"
	"pgreplica/tui/screen"
)

type pickRow struct {
	info     capture.TableInfo
	selected bool
	reason   string // why it cannot be selected
	rows     int64  // estimated
}

type pickStep struct {
	rows      []pickRow
	err       error
	cursor    int
	offset    int
	filter    screen.Input
	filtering bool
	preselect []pg.Table
	confirmed []pg.Table
	// pendingCreate are the tables the open create prompt is about.
	pendingCreate []pg.Table
	// missingOn is, per table, the replicas that lack it.
	missingOn map[pg.Table][]string
	// created are tables the wizard just created on the replicas (then
	// selected); createLines what that reported.
	created     map[pg.Table]bool
	createLines []string
	createErr   error
}

// missing is the number of tables with a key that some replica lacks.
func (p *pickStep) missing() int {
	n := 0
	for _, r := range p.rows {
		if len(r.info.Key) > 0 && len(p.missingOn[r.info.Table]) > 0 {
			n++
		}
	}
	return n
}

type createdResult struct{}

type runCreateMsg struct{}

// askCreate shows the plan of creating the missing tables on the replicas
// (the sync --schema path) and asks.
func (m *Model) askCreate() tea.Cmd {
	p := &m.pick
	if m.deps.CreateTables == nil {
		return screen.Flash(screen.Warning, "creating tables is not available here: run pgreplica sync --schema")
	}
	per := map[string][]string{}
	var tables []pg.Table
	for _, r := range p.rows {
		if len(r.info.Key) == 0 || len(p.missingOn[r.info.Table]) == 0 {
			continue
		}
		tables = append(tables, r.info.Table)
		for _, rep := range p.missingOn[r.info.Table] {
			per[rep] = append(per[rep], r.info.Table.String())
		}
	}
	if len(tables) == 0 {
		return screen.Flash(screen.Info, "every replica has every table with a key")
	}
	var body []string
	for _, rep := range m.cfg.Replicas {
		if names := per[rep.Name]; len(names) > 0 {
			body = append(body, fmt.Sprintf("replica %s: CREATE TABLE %s.", rep.Name, strings.Join(names, ", ")))
		}
	}
	body = append(body, "Each is created empty from the origin's definition (columns, types, defaults, keys, indexes, the schemas and types they need), as pgreplica sync --schema does; no existing table is changed. The initial copy (step 5) fills them. Way back: DROP TABLE them on the replica.")
	m.prompt = &screen.Prompt{Level: 2, Title: fmt.Sprintf("Create %d missing %s on the replicas?", len(tables), plural(len(tables), "table", "tables")),
		Body: body, OnYes: func() tea.Msg { return runCreateMsg{} }}
	m.pick.pendingCreate = tables
	return nil
}

func (m *Model) startCreate() tea.Cmd {
	p := &m.pick
	tables := p.pendingCreate
	p.createLines, p.createErr = nil, nil
	cfg := *m.cfg
	f := m.deps.CreateTables
	m.env.Audit("wizard: create missing tables on the replicas", "tables", len(tables))
	return m.run(func(ctx context.Context, emit func(any)) (any, error) {
		err := f(ctx, &cfg, tables, func(s string) { emit(s) })
		return createdResult{}, err
	})
}

func (m *Model) tablesCreated(err error) tea.Cmd {
	p := &m.pick
	p.createErr = err
	if err != nil {
		return screen.Flash(screen.Bad, "create tables on the replicas: "+err.Error())
	}
	if p.created == nil {
		p.created = map[pg.Table]bool{}
	}
	for _, t := range p.pendingCreate {
		p.created[t] = true
	}
	return tea.Batch(m.loadTables(), screen.Flash(screen.Good, fmt.Sprintf("%d %s created on the replicas · the initial copy fills them", len(p.pendingCreate), plural(len(p.pendingCreate), "table", "tables"))))
}

type tablesResult struct {
	tables    []capture.TableInfo
	estimates map[pg.Table]int64
	missing   map[pg.Table][]string // replicas without the table
}

func (m *Model) loadTables() tea.Cmd {
	cfg := *m.cfg
	return m.run(func(ctx context.Context, _ func(any)) (any, error) {
		inv, err := capture.ReadInventory(ctx, &cfg, "wizard")
		return tablesResult{tables: inv.Tables, estimates: inv.Estimates, missing: inv.Missing}, err
	})
}

func (m *Model) tablesLoaded(r tablesResult, err error) tea.Cmd {
	p := &m.pick
	p.err = err
	if err != nil {
		return screen.Flash(screen.Bad, "read tables: "+err.Error())
	}
	old := map[pg.Table]bool{}
	for _, row := range p.rows {
		old[row.info.Table] = row.selected
	}
	pre := map[pg.Table]bool{}
	for _, t := range p.preselect {
		pre[t] = true
	}
	p.rows = nil
	p.missingOn = r.missing
	for _, t := range r.tables {
		row := pickRow{info: t, rows: r.estimates[t.Table]}
		switch {
		case len(t.Key) == 0:
			row.reason = "no primary key"
		case len(r.missing[t.Table]) > 0:
			row.reason = "missing on " + strings.Join(r.missing[t.Table], ", ")
		}
		if row.reason == "" {
			switch {
			case p.created[t.Table]:
				row.selected = true
			case len(old) > 0:
				row.selected = old[t.Table]
			case len(pre) > 0:
				row.selected = pre[t.Table]
			default:
				row.selected = m.cfg.Tables.Match(t.Table.Schema, t.Table.Name)
			}
		}
		p.rows = append(p.rows, row)
	}
	return nil
}

func (p *pickStep) visible() []int {
	var out []int
	f := strings.ToLower(p.filter.Value)
	for i, r := range p.rows {
		if f == "" || strings.Contains(strings.ToLower(r.info.Table.String()), f) {
			out = append(out, i)
		}
	}
	return out
}

func (p *pickStep) selected() []pg.Table {
	var out []pg.Table
	for _, r := range p.rows {
		if r.selected {
			out = append(out, r.info.Table)
		}
	}
	return out
}

func (m *Model) pickKey(msg tea.KeyPressMsg) tea.Cmd {
	p := &m.pick
	if p.filtering {
		switch msg.String() {
		case "enter":
			p.filtering = false
		case "esc":
			p.filtering, p.filter.Value = false, ""
		default:
			p.filter.Update(msg)
			p.cursor = 0
		}
		return nil
	}
	vis := p.visible()
	if c, ok := screen.MoveCursor(msg, p.cursor, len(vis), 10); ok {
		p.cursor = c
		return nil
	}
	switch msg.String() {
	case "space", "x":
		if p.cursor < len(vis) {
			r := &p.rows[vis[p.cursor]]
			if r.reason != "" {
				return screen.Flash(screen.Warning, r.info.Table.String()+" cannot be selected: "+r.reason)
			}
			r.selected = !r.selected
		}
	case "a":
		for _, i := range vis {
			if p.rows[i].reason == "" {
				p.rows[i].selected = true
			}
		}
	case "n":
		for _, i := range vis {
			p.rows[i].selected = false
		}
	case "/":
		p.filtering = true
	case "r":
		return m.loadTables()
	case "c":
		return m.askCreate()
	case "esc":
		if p.filter.Value != "" {
			p.filter.Value = ""
			return nil
		}
		return m.back()
	case "enter":
		sel := p.selected()
		if len(sel) == 0 {
			if n := p.missing(); n > 0 && m.deps.CreateTables != nil {
				return screen.Flash(screen.Warning, fmt.Sprintf("no table selected: %d %s missing on the replicas · c creates them there (asks)", n, plural(n, "table is", "tables are")))
			}
			return screen.Flash(screen.Bad, "select at least one table (space toggles, a selects all)")
		}
		p.confirmed = sel
		m.cfg.Tables = config.Tables{}
		for _, t := range sel {
			m.cfg.Tables.Include = append(m.cfg.Tables.Include, Pattern(t))
		}
		if err := WriteConfig(m.deps.ConfigPath, m.cfg); err != nil {
			return screen.Flash(screen.Bad, err.Error())
		}
		m.cfg.Path = m.deps.ConfigPath
		m.env.Audit("wizard: tables picked", "tables", len(sel))
		return tea.Batch(m.next(), screen.Flash(screen.Good, fmt.Sprintf("%d tables picked; tables.include written to %s", len(sel), m.deps.ConfigPath)))
	}
	return nil
}

func (m *Model) pickView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	p := &m.pick
	if p.err != nil {
		return t.Err.Render(g.Cross+" "+p.err.Error()) + "\n\nr retries · esc back"
	}
	if p.rows == nil {
		return "reading the tables of the origin…"
	}
	vis := p.visible()
	nsel, nbad := 0, 0
	for _, r := range p.rows {
		if r.selected {
			nsel++
		}
		if r.reason != "" {
			nbad++
		}
	}
	lines := []string{fmt.Sprintf("%d of %d selected · %d cannot be selected", nsel, len(p.rows), nbad)}
	switch {
	case p.filtering || p.filter.Value != "":
		lines = append(lines, p.filter.View(p.filtering))
	case p.missing() > 0 && m.deps.CreateTables != nil:
		lines = append(lines, t.Warn.Render(fmt.Sprintf("%d missing on the replicas · c creates them", p.missing())))
	default:
		lines = append(lines, t.Dim.Render("space toggles · a all · n none · / filter"))
	}
	nameW := max(w-2-6-15-8, 16)
	lines = append(lines, t.Title.Render("  "+screen.Fit("SEL", 6)+screen.Fit("TABLE", nameW)+screen.Fit("KEY", 15)+screen.FitRight("ROWS", 8)))
	var detail []string
	if p.cursor < len(vis) {
		r := p.rows[vis[p.cursor]]
		switch {
		case r.reason == "no primary key":
			detail = screen.Wrap(r.info.Table.String()+" has no primary key: UPDATE and DELETE could not be matched on the replica. Add a primary key (then r), or leave it out.", w)
		case r.reason != "" && m.deps.CreateTables != nil:
			detail = screen.Wrap(r.info.Table.String()+" is "+r.reason+": c creates the missing tables there from the origin's definitions (shows the plan and asks).", w)
		case r.reason != "":
			detail = screen.Wrap(r.info.Table.String()+" is "+r.reason+": create it there (pgreplica sync --schema), then r.", w)
		}
	}
	if p.createErr != nil {
		detail = append(screen.Wrap(g.Cross+" "+p.createErr.Error(), w), detail...)
	} else if m.job != nil && len(p.createLines) > 0 {
		detail = append([]string{p.createLines[len(p.createLines)-1]}, detail...)
	}
	listH, _ := layout.Split(h-len(lines), len(detail)+1, 4)
	p.cursor = min(p.cursor, max(len(vis)-1, 0))
	p.offset = layout.Window(p.offset, p.cursor, len(vis), listH)
	for k := p.offset; k < min(len(vis), p.offset+listH); k++ {
		r := p.rows[vis[k]]
		cur := "  "
		if k == p.cursor {
			cur = g.Cursor + " "
		}
		box := "[ ]"
		if r.selected {
			box = "[x]"
		}
		key := strings.Join(r.info.Key, ",")
		if r.reason != "" {
			box = " - "
			key = "NOT ON REPLICA"
			if r.reason == "no primary key" {
				key = "NO PK"
			}
		}
		line := cur + screen.Fit(box, 6) + screen.Fit(r.info.Table.String(), nameW) + screen.Fit(key, 15) + screen.FitRight(screen.Short(r.rows), 8)
		if r.reason != "" {
			line = t.Dim.Render(line)
		}
		if k == p.cursor {
			line = t.Selected.Render(screen.Fit(line, w))
		}
		lines = append(lines, line)
	}
	if len(detail) > 0 {
		for len(lines) < h-len(detail) {
			lines = append(lines, "")
		}
		for _, d := range detail {
			lines = append(lines, t.Warn.Render(d))
		}
	}
	return strings.Join(lines, "\n")
}
