package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/tui/monitor"
)

// pump runs cmd and feeds every message it gives back to the root, and
// the commands those return, until nothing comes within a moment. It
// returns the commands still waiting (a running switchover's next line).
func pump(f *fixture, cmd tea.Cmd, waiting []chan tea.Msg) []chan tea.Msg {
	var cmds []tea.Cmd
	if cmd != nil {
		cmds = append(cmds, cmd)
	}
	for len(cmds) > 0 || len(waiting) > 0 {
		for _, c := range cmds {
			ch := make(chan tea.Msg, 1)
			go func() { ch <- c() }()
			waiting = append(waiting, ch)
		}
		cmds = nil
		var still []chan tea.Msg
		progressed := false
		for _, ch := range waiting {
			select {
			case msg := <-ch:
				progressed = true
				switch msg := msg.(type) {
				case nil:
				case tea.BatchMsg:
					cmds = append(cmds, msg...)
				default:
					_, next := f.root.Update(msg)
					if next != nil {
						cmds = append(cmds, next)
					}
				}
			case <-time.After(200 * time.Millisecond):
				still = append(still, ch)
			}
		}
		waiting = still
		if !progressed && len(cmds) == 0 {
			return waiting
		}
	}
	return nil
}

func screenText(t *testing.T, f *fixture, w, h int) string {
	t.Helper()
	lines := strings.Split(f.root.Render(), "\n")
	if len(lines) != h {
		t.Fatalf("%d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n > w {
			t.Fatalf("line %d is %d wide: %q", i, n, ansi.Strip(l))
		}
	}
	return ansi.Strip(strings.Join(lines, "\n"))
}

// O on a replica in the monitor asks for its name typed (enter alone
// does not confirm), then runs the switchover and shows its steps as they
// come, at 80×24.
func TestMonitorSwitchoverAsksAndShowsStepsLive(t *testing.T) {
	f := newFixture(false)
	gate := make(chan struct{})
	var asked []string
	f.mon.SetDeps(monitor.Deps{Switchover: func(_ context.Context, replica string, report func(string)) error {
		asked = append(asked, replica)
		report("step 1/7 fence")
		report("fenced 3 tables on the origin and on replica-1: writes there now fail")
		report("step 1/7 fence done in 31ms")
		report("step 2/7 catchup")
		<-gate
		for _, l := range []string{"catchup: every replica applied everything: replica-1 0 pending, replica-2 0 pending", "step 2/7 catchup done in 501ms",
			"step 3/7 sequences", "step 4/7 promote", "step 5/7 config", "step 6/7 unfence", "step 7/7 verify",
			"verify: replica replica-1: equal (3 tables)", "verify: replica replica-2: equal (3 tables)", "step 7/7 verify done in 90ms"} {
			report(l)
		}
		return nil
	}})
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("2"), press("O"))
	s := screenText(t, f, 80, 24)
	for _, want := range []string{"Switch over to replica-1?", "Type replica-1 to confirm", "The engine must be stopped first (S)"} {
		if !strings.Contains(s, want) {
			t.Fatalf("the prompt lacks %q:\n%s", want, s)
		}
	}
	f.send(press("enter"))
	if len(asked) != 0 || !strings.Contains(screenText(t, f, 80, 24), "Type replica-1 to confirm") {
		t.Fatal("enter alone confirmed or closed the switchover prompt")
	}
	typeText(f.root, "replica-1")
	_, cmd := f.root.Update(press("enter"))
	waiting := pump(f, cmd, nil)
	s = screenText(t, f, 80, 24)
	if len(asked) != 1 || asked[0] != "replica-1" {
		t.Fatalf("switched over to %v", asked)
	}
	for _, want := range []string{"switchover to replica-1: RUNNING", "step 1/7 fence done in 31ms", "step 2/7 catchup"} {
		if !strings.Contains(s, want) {
			t.Fatalf("while running, the monitor lacks %q:\n%s", want, s)
		}
	}
	close(gate)
	pump(f, nil, waiting)
	s = screenText(t, f, 80, 24)
	for _, want := range []string{"switchover to replica-1: DONE", "verify: replica replica-2: equal (3 tables)", "step 7/7 verify done in 90ms", "switched over to replica-1"} {
		if !strings.Contains(s, want) {
			t.Fatalf("once done, the monitor lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "step 2/7 catchup done") {
		t.Fatalf("the panel shows more than its last lines:\n%s", s)
	}
	t.Logf("\n%s", s)
}

// A read-only TUI has no switchover: O does nothing and help omits it.
func TestReadOnlyHasNoSwitchover(t *testing.T) {
	f := newFixture(false)
	f.env.ReadOnly = true
	f.mon.SetDeps(monitor.Deps{Switchover: func(context.Context, string, func(string)) error {
		t.Fatal("a read-only TUI switched over")
		return nil
	}})
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	f.send(press("2"), press("O"))
	if s := screenText(t, f, 80, 24); strings.Contains(s, "Switch over") {
		t.Fatalf("read-only: %s", s)
	}
	f.send(press("?"))
	if s := screenText(t, f, 80, 24); strings.Contains(s, "switchover") {
		t.Fatalf("read-only help names the switchover:\n%s", s)
	}
}
