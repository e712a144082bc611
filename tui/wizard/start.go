package wizard

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tea "charm.land/bubbletea/v2"

	"pgreplica/tui/screen"
)

type startStep struct {
	choice int
	wrote  string
	err    error
}

var startChoices = []struct{ name, desc string }{
	{"run here", "start the engine in this process and open the monitor; quitting stops it"},
	{"systemd unit", "write pgreplica.service next to the config; install it with systemctl"},
	{"not now", "quit and print the command that runs the engine"},
}

func (m *Model) startKey(msg tea.KeyPressMsg) tea.Cmd {
	s := &m.start
	switch msg.String() {
	case "up", "k":
		s.choice = max(s.choice-1, 0)
	case "down", "j":
		s.choice = min(s.choice+1, len(startChoices)-1)
	case "v":
		m.sqlView, m.sqlTop = true, 0
	case "esc":
		return m.back()
	case "enter":
		cmdLine := fmt.Sprintf("%s --config %s run", m.deps.Binary, m.absConfig())
		switch s.choice {
		case 0:
			m.states[stepStart] = done
			m.env.Audit("wizard: engine started in the TUI")
			return func() tea.Msg { return screen.WizardDoneMsg{StartEngine: true} }
		case 1:
			path := filepath.Join(filepath.Dir(m.absConfig()), "pgreplica.service")
			if err := os.WriteFile(path, []byte(Unit(m.deps.Binary, m.absConfig())), 0o644); err != nil {
				s.err = err
				return screen.Flash(screen.Bad, err.Error())
			}
			s.wrote = path
			m.states[stepStart] = done
			m.env.Audit("wizard: systemd unit written", "path", path)
			return screen.Flash(screen.Good, "unit written to "+path)
		case 2:
			m.states[stepStart] = done
			return func() tea.Msg {
				return screen.QuitMsg{Message: "pgreplica is installed. Run the engine with:\n  " + cmdLine + " --daemon"}
			}
		}
	}
	return nil
}

func (m *Model) startView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	s := &m.start
	var names []string
	for _, r := range m.cfg.Replicas {
		names = append(names, r.Name)
	}
	lines := screen.WrapAll([]string{
		"config    " + m.absConfig(),
		"capture   " + fmt.Sprintf("%d tables", len(m.pick.confirmed)),
		"replicas  " + strings.Join(names, ", "),
	}, w)
	lines = append(lines, "", "How should the replay engine run?")
	for i, c := range startChoices {
		cur := "  "
		if i == s.choice {
			cur = g.Cursor + " "
		}
		for j, l := range screen.Wrap(c.desc, w-16) {
			line := strings.Repeat(" ", 16) + l
			if j == 0 {
				line = cur + screen.Fit(c.name, 14) + l
			}
			if i == s.choice {
				line = t.Selected.Render(screen.Fit(line, w))
			}
			lines = append(lines, line)
		}
	}
	lines = append(lines, "")
	if s.wrote != "" {
		lines = append(lines, screen.WrapAll([]string{t.OK.Render(g.Check + " wrote " + s.wrote), "Install it as root (it runs as user pgreplica, who must be able to read the config):",
			"  useradd --system --home /var/lib/pgreplica pgreplica",
			"  cp " + s.wrote + " /etc/systemd/system/ && systemctl daemon-reload",
			"  systemctl enable --now pgreplica", "Then `pgreplica tui` attaches to it when control.socket is set."}, w)...)
	} else {
		lines = append(lines, screen.Wrap("unit preview (v shows it): ExecStart="+m.deps.Binary+" --config "+m.absConfig()+" run --daemon", w)...)
	}
	return strings.Join(lines, "\n")
}

var _ = strings.Join
