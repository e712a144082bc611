package wizard

import (
	"context"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/capture"
	pgsql "pgreplica/sql"
	"pgreplica/tui/screen"
)

var originSQL = pgsql.Origin

type installStep struct {
	lines []string
	err   error
}

func (m *Model) installKey(msg tea.KeyPressMsg) tea.Cmd {
	switch msg.String() {
	case "v":
		m.sqlView, m.sqlTop = true, 0
	case "esc":
		return m.back()
	case "enter":
		if m.states[stepInstall] == done {
			return m.next()
		}
		n := len(m.pick.confirmed)
		m.prompt = &screen.Prompt{
			Level: 2,
			Title: "Install capture on the origin?",
			Body: []string{
				fmt.Sprintf("Creates the pgreplica schema on the origin and a capture trigger on each of the %d picked tables, and the bookkeeping schema on every replica. This is the wizard's first write.", n),
				"Undo: pgreplica uninstall removes it all; application rows are never touched.",
			},
			OnYes: m.runInstall(),
		}
	}
	return nil
}

func (m *Model) runInstall() tea.Cmd {
	return func() tea.Msg { return runInstallMsg{} }
}

type runInstallMsg struct{}

func (m *Model) startInstall() tea.Cmd {
	m.install.lines, m.install.err = nil, nil
	cfg := *m.cfg
	m.env.Audit("wizard: install capture", "set", cfg.Name)
	return m.run(func(ctx context.Context, emit func(any)) (any, error) {
		return nil, capture.Install(ctx, &cfg, func(line string) { emit(line) })
	})
}

func (m *Model) installDone(err error) tea.Cmd {
	m.install.err = err
	if err != nil {
		m.states[stepInstall] = failed
		return screen.Flash(screen.Bad, "install failed; the tables done before the error keep their triggers: enter runs it again and completes it")
	}
	m.states[stepInstall] = done
	m.copy.prepared = false
	m.copy.prepare(m)
	return screen.Flash(screen.Good, "capture installed · enter continues to the initial copy")
}

func (m *Model) installView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	s := &m.install
	var lines []string
	if len(s.lines) == 0 && s.err == nil && m.job == nil {
		lines = append(lines, screen.Wrap("Each table gets its triggers in a short transaction of its own (so a busy origin is not blocked); everything is checked first, and running it again completes an install an error cut short. This is the first step that writes.", w)...)
		lines = append(lines, "", t.Title.Render("PLAN")+" (v shows the full SQL)",
			" CREATE SCHEMA pgreplica",
			" CREATE TABLE  pgreplica.meta, .log (+3 rotating parts), .replica",
			" CREATE FUNCTION pgreplica.add_table() and the capture helpers",
			fmt.Sprintf(" a capture trigger on each of the %d picked tables:", len(m.pick.confirmed)))
		for i, tb := range m.pick.confirmed {
			if i == 4 && len(m.pick.confirmed) > 5 {
				lines = append(lines, fmt.Sprintf("   … and %d more", len(m.pick.confirmed)-4))
				break
			}
			lines = append(lines, "   "+tb.String())
		}
		lines = append(lines, " on each replica: schema pgreplica (position, conflict, table_state)", "", "Press enter to run (asks first), or esc to go back.")
		return strings.Join(lines, "\n")
	}
	for _, l := range s.lines {
		mark := g.Check + " "
		if strings.HasPrefix(l, "  ") {
			mark = ""
		}
		lines = append(lines, t.OK.Render(mark)+l)
	}
	if s.err != nil {
		lines = append(lines, "")
		for _, l := range screen.Wrap(g.Cross+" "+s.err.Error(), w) {
			lines = append(lines, t.Err.Render(l))
		}
		lines = append(lines, "", "Fix the problem above, then enter to run again.")
	} else if m.states[stepInstall] == done {
		lines = append(lines, "", "enter continues to the initial copy")
	}
	if over := len(lines) - h; over > 0 {
		lines = lines[over:]
	}
	return strings.Join(lines, "\n")
}
