package wizard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/config"
	"pgreplica/core/preflight"
	"pgreplica/tui/screen"
)

type connectStep struct {
	editing bool
	field   int
	// inputs are the set name, the origin DSN, then a name and a DSN for
	// each replica (ctrl+n adds one, ctrl+x removes the focused one).
	inputs []screen.Input
	report *CheckReport
	cfgErr error
	wrote  string
}

func (c *connectStep) init(cfg *config.Config, cfgErr error) {
	c.inputs = []screen.Input{{Prompt: "set name", Value: cfg.Name}, {Prompt: "origin", Value: cfg.Origin.DSN}}
	for _, r := range cfg.Replicas {
		c.addReplica(r.Name, r.DSN)
	}
	if len(cfg.Replicas) == 0 {
		c.addReplica("", "")
	}
	c.cfgErr = cfgErr
	c.editing = cfg.Origin.DSN == "" || len(cfg.Replicas) == 0
	c.field = min(c.field, len(c.inputs)-1)
}

// addReplica adds the inputs of one more replica, named replica-N unless
// a name is given.
func (c *connectStep) addReplica(name, dsn string) {
	n := (len(c.inputs)-2)/2 + 1
	if name == "" {
		name = fmt.Sprintf("replica-%d", n)
	}
	c.inputs = append(c.inputs, screen.Input{Prompt: fmt.Sprintf("replica %d name", n), Value: name},
		screen.Input{Prompt: fmt.Sprintf("replica %d dsn", n), Value: dsn})
}

// removeReplica removes the replica whose input has focus (one stays).
func (c *connectStep) removeReplica() bool {
	if c.field < 2 || len(c.inputs) <= 4 {
		return false
	}
	i := 2 + (c.field-2)/2*2
	c.inputs = append(c.inputs[:i], c.inputs[i+2:]...)
	for j := 2; j < len(c.inputs); j += 2 {
		n := (j-2)/2 + 1
		c.inputs[j].Prompt, c.inputs[j+1].Prompt = fmt.Sprintf("replica %d name", n), fmt.Sprintf("replica %d dsn", n)
	}
	c.field = min(i, len(c.inputs)-2)
	return true
}

type checkResult struct {
	report CheckReport
	resume resumeState
}

func (m *Model) runChecks() tea.Cmd {
	cfg := *m.cfg
	return m.run(func(ctx context.Context, _ func(any)) (any, error) {
		r := Check(ctx, &cfg)
		var rs resumeState
		if f, _ := r.Blocking(); f == 0 {
			rs = detect(ctx, &cfg)
		}
		return checkResult{report: r, resume: rs}, nil
	})
}

func (m *Model) checked(r checkResult) tea.Cmd {
	m.connect.report = &r.report
	fails, warns := r.report.Blocking()
	if fails > 0 {
		m.states[stepConnect] = failed
		return screen.Flash(screen.Bad, fmt.Sprintf("%d blocking %s, %d %s · fix and press r", fails, plural(fails, "problem", "problems"), warns, plural(warns, "warning", "warnings")))
	}
	m.states[stepConnect] = done
	var cmds []tea.Cmd
	if _, err := os.Stat(m.deps.ConfigPath); errors.Is(err, os.ErrNotExist) {
		if err := WriteConfig(m.deps.ConfigPath, m.cfg); err != nil {
			m.connect.wrote = "could not write the config: " + err.Error()
		} else {
			m.connect.wrote = "config written to " + m.absConfig()
			m.cfg.Path = m.deps.ConfigPath
			m.env.Audit("wizard: wrote config", "path", m.absConfig())
		}
	}
	msg := "all checks passed"
	if warns > 0 {
		msg = fmt.Sprintf("no blocking problem, %d %s", warns, plural(warns, "warning", "warnings"))
	}
	if !m.resumed {
		m.resumed = true
		if cmd := m.resume(r.resume); cmd != nil {
			return cmd
		}
	}
	cmds = append(cmds, screen.Flash(screen.Good, msg))
	return tea.Batch(cmds...)
}

func (m *Model) connectKey(msg tea.KeyPressMsg) tea.Cmd {
	c := &m.connect
	if c.editing {
		switch msg.String() {
		case "tab", "down":
			c.field = (c.field + 1) % len(c.inputs)
		case "shift+tab", "up":
			c.field = (c.field + len(c.inputs) - 1) % len(c.inputs)
		case "ctrl+n":
			c.addReplica("", "")
			c.field = len(c.inputs) - 2
		case "ctrl+x":
			if !c.removeReplica() {
				return screen.Flash(screen.Info, "move to the replica to remove (one must stay)")
			}
		case "esc":
			if m.cfg.Origin.DSN != "" {
				c.editing = false
				c.init(m.cfg, c.cfgErr)
				c.editing = false
			}
		case "enter":
			if c.field < len(c.inputs)-1 {
				c.field++
				return nil
			}
			return m.saveDSNs()
		default:
			c.inputs[c.field].Update(msg)
		}
		return nil
	}
	switch msg.String() {
	case "e":
		c.editing, c.field = true, 1
	case "r":
		return m.runChecks()
	case "enter":
		if c.report == nil {
			return m.runChecks()
		}
		if f, _ := c.report.Blocking(); f > 0 {
			return screen.Flash(screen.Bad, "blocked: fix the FAIL lines (Try: says how), then r to re-run the checks")
		}
		return m.next()
	}
	return nil
}

// saveDSNs applies the edited set name and DSNs and checks them.
func (m *Model) saveDSNs() tea.Cmd {
	c := &m.connect
	name := strings.TrimSpace(c.inputs[0].Value)
	if name == "" {
		name = config.DefaultName
	}
	origin := strings.TrimSpace(c.inputs[1].Value)
	if origin == "" {
		c.field = 1
		return screen.Flash(screen.Bad, "enter the origin DSN (libpq key=value or postgres:// URL)")
	}
	next := *m.cfg
	next.Name, next.Origin.DSN = name, origin
	next.Replicas = nil
	for i := 2; i+1 < len(c.inputs); i += 2 {
		rname, dsn := strings.TrimSpace(c.inputs[i].Value), strings.TrimSpace(c.inputs[i+1].Value)
		if dsn == "" {
			c.field = i + 1
			return screen.Flash(screen.Bad, "enter the DSN of "+c.inputs[i+1].Prompt+" (or ctrl+x removes that replica)")
		}
		if rname == "" {
			rname = fmt.Sprintf("replica-%d", (i-2)/2+1)
		}
		next.Replicas = append(next.Replicas, config.Replica{Name: rname, DSN: dsn})
	}
	if err := next.Validate(); err != nil {
		return screen.Flash(screen.Bad, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	*m.cfg = next
	c.editing = false
	if _, err := os.Stat(m.deps.ConfigPath); err == nil {
		// An existing file is rewritten (kept as .bak) so that it matches.
		if err := WriteConfig(m.deps.ConfigPath, m.cfg); err != nil {
			return screen.Flash(screen.Bad, err.Error())
		}
		c.wrote = "config updated: " + m.absConfig() + " (old one kept as .bak)"
	}
	m.resumed = false
	return m.runChecks()
}

func (m *Model) connectView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	c := &m.connect
	var lines []string
	if c.editing {
		lines = append(lines, screen.Wrap("Where are the databases? libpq key=value strings or postgres:// URLs; passwords are best kept in ~/.pgpass (PG* variables work too). Name each replica: the name is shown everywhere.", w)...)
		lines = append(lines, "")
		labelW := 0
		for _, in := range c.inputs {
			labelW = max(labelW, screen.Width(in.Prompt))
		}
		for i := range c.inputs {
			in := &c.inputs[i]
			label := screen.Fit(in.Prompt, labelW+1)
			if i == c.field {
				lines = append(lines, t.Title.Render(g.Cursor+" "+label)+in.Tail(w-labelW-3, true))
			} else {
				lines = append(lines, "  "+label+in.Tail(w-labelW-3, false))
			}
		}
		lines = append(lines, "")
		lines = append(lines, screen.Wrap("tab/↓ next field · ctrl+n adds a replica · ctrl+x removes the focused one · enter on the last field saves and checks", w)...)
		if c.cfgErr != nil && !strings.Contains(c.cfgErr.Error(), "no configuration") {
			lines = append(lines, "", t.Err.Render(g.Cross+" config: "+c.cfgErr.Error()))
		}
		return strings.Join(lines, "\n")
	}
	labelW := len("origin") + 2
	for _, r := range m.cfg.Replicas {
		labelW = max(labelW, len(r.Name)+2)
	}
	nodes := []string{screen.Fit("origin", labelW) + config.Describe(m.cfg.Origin.DSN)}
	for _, r := range m.cfg.Replicas {
		nodes = append(nodes, screen.Fit(r.Name, labelW)+config.Describe(r.DSN))
	}
	lines = append(lines, screen.WrapAll(nodes, w)...)
	lines = append(lines, "")
	if c.report == nil {
		lines = append(lines, "Checking connections, versions and privileges… (nothing is changed)")
		return strings.Join(lines, "\n")
	}
	r := c.report
	cols := columns(r)
	colW := max((w-6-18)/max(len(cols), 1), 8)
	colW = min(colW, 16)
	head := screen.Fit("", 6) + screen.Fit("CHECK", 18)
	for _, col := range cols {
		head += screen.Fit(col, colW-1) + " "
	}
	lines = append(lines, t.Title.Render(head))
	// When the whole table and the verdict do not fit, the OK rows fold
	// into one line (the problems keep their rows).
	fold := len(lines)+len(r.Results)+3 > h
	var okNames []string
	for _, f := range r.Results {
		if fold && f.Severity == preflight.OK {
			okNames = append(okNames, f.Check)
			continue
		}
		level := f.Severity.Label()
		line := t.StateStyle(level).Render(screen.Fit(level, 6)) + screen.Fit(f.Check, 18)
		for _, v := range f.Values {
			line += screen.Fit(v, colW-1) + " "
		}
		lines = append(lines, line)
	}
	if len(okNames) > 0 {
		for i, l := range screen.Wrap(strings.Join(okNames, " · "), w-6) {
			if i == 0 {
				lines = append(lines, t.OK.Render(screen.Fit("OK", 6))+l)
			} else {
				lines = append(lines, "      "+l)
			}
		}
	}
	// The verdict first, then each problem with its fix (the body
	// scrolls when they do not fit).
	fails, warns := r.Blocking()
	sum := fmt.Sprintf("checks took %.1fs · nothing was changed", r.Took.Seconds())
	if fails > 0 {
		sum = fmt.Sprintf("%s %d blocking, %d %s", g.Cross, fails, warns, plural(warns, "warning", "warnings")) + " · " + sum
		for _, l := range screen.Wrap(sum, w) {
			lines = append(lines, t.Err.Render(l))
		}
	} else {
		lines = append(lines, screen.Wrap(g.Check+" ready · "+sum+" · enter continues", w)...)
	}
	if c.wrote != "" {
		lines = append(lines, screen.Wrap(c.wrote, w)...)
	}
	for _, f := range r.Results {
		if f.Severity == preflight.OK || f.Problem == "" {
			continue
		}
		level := f.Severity.Label()
		st := t.Warn
		if f.Severity == preflight.Fail {
			st = t.Err
		}
		lines = append(lines, "")
		for i, l := range screen.Wrap(f.Problem, w-len(level)-1) {
			if i == 0 {
				l = st.Render(level) + " " + l
			} else {
				l = strings.Repeat(" ", len(level)+1) + l
			}
			lines = append(lines, l)
		}
		for i, l := range screen.Wrap(f.Try, w-5) {
			if i == 0 {
				lines = append(lines, "Try: "+l)
			} else {
				lines = append(lines, "     "+l)
			}
		}
	}
	return strings.Join(lines, "\n")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
