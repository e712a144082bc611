package wizard

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/pg"
	"pgreplica/tui/screen"
)

type copyRow struct {
	replica string
	table   pg.Table
	p       CopyProgress
	started time.Time
	took    time.Duration
}

type copyStep struct {
	prepared bool
	rows     []copyRow
	err      error
	skipped  bool
}

func (c *copyStep) prepare(m *Model) {
	if c.prepared {
		return
	}
	c.prepared = true
	c.rows = nil
	for _, r := range m.cfg.Replicas {
		for _, t := range m.pick.confirmed {
			c.rows = append(c.rows, copyRow{replica: r.Name, table: t})
		}
	}
}

func (c *copyStep) event(ev any) {
	p, ok := ev.(CopyProgress)
	if !ok {
		return
	}
	for i := range c.rows {
		r := &c.rows[i]
		if r.table == p.Table && (r.replica == p.Replica || p.Replica == "") {
			if r.started.IsZero() {
				r.started = time.Now()
			}
			r.p = p
			if p.Done && r.took == 0 {
				r.took = time.Since(r.started)
			}
		}
	}
}

func (m *Model) copyKey(msg tea.KeyPressMsg) tea.Cmd {
	switch msg.String() {
	case "esc":
		return m.back()
	case "S":
		m.prompt = &screen.Prompt{
			Level: 3,
			Title: "Skip the initial copy?",
			Body: []string{
				"Only if every replica already holds exactly the origin's rows of the picked tables, as of the install (e.g. restored from the same backup while no one wrote).",
				"Otherwise the replicas will differ from the origin, and UPDATEs and DELETEs of missing rows become conflicts. Way back: pgreplica sync copies the tables later.",
			},
			Expect: "skip",
			OnYes:  func() tea.Msg { return skipCopyMsg{} },
		}
	case "enter", "r":
		if m.states[stepCopy] == done && msg.String() == "enter" {
			return m.next()
		}
		if m.deps.Copy == nil {
			return screen.Flash(screen.Bad, "the online copy is not available in this build; copy the data yourself and S to skip")
		}
		return m.countReplicaRows()
	}
	return nil
}

type replicaRowsResult struct {
	rows map[string]map[pg.Table]int64
}

// countReplicaRows reads what the copy would replace, then asks.
func (m *Model) countReplicaRows() tea.Cmd {
	if m.deps.ReplicaRows == nil {
		return m.askCopy(replicaRowsResult{}, nil)
	}
	cfg := *m.cfg
	tables := append([]pg.Table(nil), m.pick.confirmed...)
	f := m.deps.ReplicaRows
	return m.run(func(ctx context.Context, _ func(any)) (any, error) {
		r, err := f(ctx, &cfg, tables)
		return replicaRowsResult{rows: r}, err
	})
}

// askCopy opens the copy's confirmation: it names each replica and the
// rows there that the copy replaces. Replacing rows is typed (level 3);
// filling empty tables is confirmed with y.
func (m *Model) askCopy(r replicaRowsResult, err error) tea.Cmd {
	if err != nil {
		return screen.Flash(screen.Bad, "count the replicas' rows before the copy: "+err.Error())
	}
	var body []string
	var withRows []string
	n := len(m.pick.confirmed)
	for _, rep := range m.cfg.Replicas {
		if r.rows == nil {
			body = append(body, fmt.Sprintf("replica %s: its rows of the %d picked tables are replaced by the origin's.", rep.Name, n))
			withRows = append(withRows, rep.Name)
			continue
		}
		var total int64
		var which []string
		for _, t := range m.pick.confirmed {
			if c := r.rows[rep.Name][t]; c > 0 {
				total += c
				which = append(which, fmt.Sprintf("%s (~%s)", t, screen.Count(c)))
			}
		}
		if total == 0 {
			body = append(body, fmt.Sprintf("replica %s: the %d picked tables are empty there; nothing is replaced.", rep.Name, n))
			continue
		}
		withRows = append(withRows, rep.Name)
		if len(which) > 4 {
			which = append(which[:4], fmt.Sprintf("%d more", len(which)-4))
		}
		body = append(body, fmt.Sprintf("replica %s: ~%s rows are DELETED and replaced by the origin's: %s.", rep.Name, screen.Count(total), strings.Join(which, ", ")))
	}
	body = append(body, "Copies the origin's rows of the picked tables, at one snapshot, to every replica. Way back: the replica's rows are not kept; restore them from a backup of the replica.")
	p := &screen.Prompt{Level: 2, Title: fmt.Sprintf("Copy %d tables to %d %s?", n, len(m.cfg.Replicas), plural(len(m.cfg.Replicas), "replica", "replicas")), Body: body,
		OnYes: func() tea.Msg { return runCopyMsg{} }}
	if len(withRows) > 0 {
		p.Level = 3
		p.Expect = withRows[0]
		if len(withRows) > 1 {
			p.Expect = "replace"
		}
	}
	m.prompt = p
	return nil
}

type runCopyMsg struct{}

type skipCopyMsg struct{}

func (m *Model) startCopy() tea.Cmd {
	m.copy.prepared = false
	m.copy.prepare(m)
	m.copy.err = nil
	cfg := *m.cfg
	tables := append([]pg.Table(nil), m.pick.confirmed...)
	copyFn := m.deps.Copy
	m.env.Audit("wizard: initial copy", "tables", len(tables))
	return m.run(func(ctx context.Context, emit func(any)) (any, error) {
		return nil, copyFn(ctx, &cfg, tables, func(p CopyProgress) { emit(p) })
	})
}

func (m *Model) copyDone(err error) tea.Cmd {
	m.copy.err = err
	if err != nil {
		m.states[stepCopy] = failed
		return screen.Flash(screen.Bad, "copy failed: "+err.Error())
	}
	m.states[stepCopy] = done
	for i := range m.copy.rows {
		m.copy.rows[i].p.Done = true
	}
	return screen.Flash(screen.Good, "initial copy done · enter continues to the smoke test")
}

func (m *Model) copyView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	c := &m.copy
	lines := screen.Wrap("Triggers are on: nothing written during the copy is missed (applied after each table's copy).", w)
	if n := m.notes[stepCopy]; n != "" && m.states[stepCopy] == done && m.job == nil {
		lines = append(lines, "", t.OK.Render(g.Check+" "+n), "", "enter continues · r copies again")
		return strings.Join(lines, "\n")
	}
	if c.skipped {
		lines = append(lines, "", t.Warn.Render("skipped: you confirmed the replicas already hold the data"), "", "enter continues")
		return strings.Join(lines, "\n")
	}
	// The verdict or the next action first; the table after it.
	lines = append(lines, "")
	switch {
	case c.err != nil:
		for _, l := range screen.Wrap(g.Cross+" "+c.err.Error(), w) {
			lines = append(lines, t.Err.Render(l))
		}
		lines = append(lines, screen.Wrap("r copies again (tables left half-copied are copied anew)", w)...)
	case m.job != nil:
		lines = append(lines, screen.Wrap("esc cancels (tables not finished are copied again next time)", w)...)
	case m.states[stepCopy] == done:
		lines = append(lines, t.OK.Render(g.Check+" every table copied")+" · enter continues")
	default:
		lines = append(lines, screen.Wrap("enter shows what the copy replaces on each replica and asks; S skips "+screen.Asks+" (only when the replicas already hold the data)", w)...)
	}
	lines = append(lines, "")
	nameW := max(w-2-12-10-16, 14)
	head := t.Title.Render("  " + screen.Fit("TABLE", nameW) + screen.Fit("REPLICA", 12) + screen.FitRight("ROWS", 9) + "  PROGRESS")
	if len(lines)+1+len(c.rows) > h && len(m.cfg.Replicas) > 1 {
		// Too many rows for the window: one line per replica.
		lines = append(lines, t.Title.Render("  "+screen.Fit("REPLICA", 14)+screen.Fit("TABLES", 10)+screen.FitRight("ROWS", 9)+"  NOW"))
		for _, rep := range m.cfg.Replicas {
			var n, doneN int
			var rows int64
			now := ""
			for _, r := range c.rows {
				if r.replica != rep.Name {
					continue
				}
				n++
				rows += r.p.Rows
				switch {
				case r.p.Done:
					doneN++
				case !r.started.IsZero():
					now = r.table.String()
				}
			}
			mark := " "
			switch {
			case n > 0 && doneN == n:
				mark = t.OK.Render(g.Check)
			case now != "":
				mark = t.Warn.Render(g.Spinner[m.spin%len(g.Spinner)])
			}
			lines = append(lines, mark+" "+screen.Fit(rep.Name, 14)+screen.Fit(fmt.Sprintf("%d/%d", doneN, n), 10)+screen.FitRight(screen.Short(rows), 9)+"  "+now)
		}
		return strings.Join(lines, "\n")
	}
	lines = append(lines, head)
	for _, r := range c.rows {
		mark, prog := " ", ""
		switch {
		case r.p.Done:
			mark, prog = t.OK.Render(g.Check), fmt.Sprintf("done %6s", r.took.Round(100*time.Millisecond))
		case !r.started.IsZero():
			mark = t.Warn.Render(g.Spinner[m.spin%len(g.Spinner)])
			if r.p.TotalRows > 0 {
				prog = screen.Bar(r.p.Rows, r.p.TotalRows, 8, g.Bar, g.BarEmpty) + fmt.Sprintf(" %d%%", 100*r.p.Rows/r.p.TotalRows)
			} else {
				prog = screen.Bytes(r.p.Bytes)
			}
		case m.job != nil:
			prog = "waiting"
		}
		lines = append(lines, mark+" "+screen.Fit(r.table.String(), nameW)+screen.Fit(r.replica, 12)+screen.FitRight(screen.Short(r.p.Rows), 9)+"  "+prog)
	}
	return strings.Join(lines, "\n")
}
