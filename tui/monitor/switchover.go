package monitor

import (
	"context"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/tui/screen"
)

// switchoverRun is a switchover started from the monitor: its lines as
// they come (each step, its progress, verify's result).
type switchoverRun struct {
	replica string
	started time.Time
	took    time.Duration
	lines   []string
	done    bool
	err     error
	ch      chan tea.Msg
}

// switchoverLineMsg is one line reported by the running switchover;
// switchoverDoneMsg its end.
type (
	switchoverLineMsg struct{ line string }
	switchoverDoneMsg struct{ err error }
)

// maxSwitchoverLines is how many of its last lines the panel shows.
const maxSwitchoverLines = 7

func switchoverKey() key.Binding {
	k := key.NewBinding(key.WithKeys("O"), key.WithHelp("O", "make it the origin: switchover "+screen.Asks))
	k.SetEnabled(false)
	return k
}

// askSwitchover opens the typed prompt of a switchover to replica.
func (m *Model) askSwitchover(replica string) tea.Cmd {
	if m.sw != nil && !m.sw.done {
		return screen.Flash(screen.Info, "a switchover to "+m.sw.replica+" is running")
	}
	set := "the set"
	if m.env.Config != nil {
		set = "set " + m.env.Config.Name
	}
	m.prompt = &screen.Prompt{
		Level: 3,
		Title: "Switch over to " + replica + "?",
		Body: []string{
			replica + " becomes the origin of " + set + "; the origin becomes its replica. Applications get an error naming the switchover while the origin is fenced (seconds), then write to " + replica + ".",
			"The engine must be stopped first (S). Interrupted, pgreplica switchover --resume finishes it, or --abort goes back.",
		},
		Expect: replica,
		OnYes:  m.startSwitchover(replica),
	}
	return nil
}

// startSwitchover runs the switchover in the background; its lines come
// back one message at a time.
func (m *Model) startSwitchover(replica string) tea.Cmd {
	run, env := m.deps.Switchover, m.env
	return func() tea.Msg {
		env.Audit("tui: switchover", "replica", replica)
		ch := make(chan tea.Msg, 64)
		go func() {
			err := run(context.Background(), replica, func(l string) { ch <- switchoverLineMsg{l} })
			ch <- switchoverDoneMsg{err}
			close(ch)
		}()
		return switchoverStartMsg{replica: replica, ch: ch}
	}
}

type switchoverStartMsg struct {
	replica string
	ch      chan tea.Msg
}

func waitSwitchover(ch chan tea.Msg) tea.Cmd {
	return func() tea.Msg {
		msg, ok := <-ch
		if !ok {
			return nil
		}
		return msg
	}
}

// switchoverMsg handles the messages of a running switchover.
func (m *Model) switchoverMsg(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case switchoverStartMsg:
		m.sw = &switchoverRun{replica: msg.replica, started: m.env.Now(), ch: msg.ch}
		return waitSwitchover(msg.ch)
	case switchoverLineMsg:
		if m.sw == nil {
			return nil
		}
		m.sw.lines = append(m.sw.lines, msg.line)
		return waitSwitchover(m.sw.ch)
	case switchoverDoneMsg:
		if m.sw == nil {
			return nil
		}
		m.sw.done, m.sw.err, m.sw.took = true, msg.err, m.env.Now().Sub(m.sw.started)
		if msg.err != nil {
			return screen.Flash(screen.Bad, "switchover to "+m.sw.replica+": "+msg.err.Error())
		}
		return screen.Flash(screen.Good, "switched over to "+m.sw.replica+": quit, start pgreplica on the new config")
	}
	return nil
}

// switchoverPanel is the running (or finished) switchover, for the view.
func (m *Model) switchoverPanel(w int) []string {
	if m.sw == nil {
		return nil
	}
	t := m.env.Theme
	var head string
	switch {
	case !m.sw.done:
		head = t.Warn.Render("RUNNING") + " " + screen.Dur(m.env.Now().Sub(m.sw.started)) + " · q interrupts it (then --resume)"
	case m.sw.err != nil:
		head = t.Err.Render("FAILED") + " after " + screen.Dur(m.sw.took)
	default:
		head = t.OK.Render("DONE") + " in " + screen.Dur(m.sw.took) + " · restart pgreplica on the new config"
	}
	out := []string{" switchover to " + m.sw.replica + ": " + head}
	lines := m.sw.lines
	if len(lines) > maxSwitchoverLines {
		lines = lines[len(lines)-maxSwitchoverLines:]
	}
	for _, l := range lines {
		out = append(out, "   "+screen.Fit(strings.TrimSpace(l), w-4))
	}
	if m.sw.err != nil {
		out = append(out, banner(t.Err.Render, m.sw.err.Error(), w)...)
	}
	return out
}
