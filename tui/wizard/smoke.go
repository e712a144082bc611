package wizard

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/smoke"
	"pgreplica/tui/screen"
)

type smokeStep struct {
	steps  []smoke.Step
	says   []string
	result *smoke.Result
	err    error
}

func (s *smokeStep) event(ev any) {
	switch e := ev.(type) {
	case smoke.Step:
		s.steps = append(s.steps, e)
	case string:
		s.says = append(s.says, e)
	}
}

func (m *Model) smokeKey(msg tea.KeyPressMsg) tea.Cmd {
	switch msg.String() {
	case "esc":
		return m.back()
	case "r":
		return m.askSmoke()
	case "enter":
		if m.states[stepSmoke] == done {
			return m.next()
		}
		return m.askSmoke()
	}
	return nil
}

type runSmokeMsg struct{}

// askSmoke confirms the smoke test: it writes to the origin and every
// replica.
func (m *Model) askSmoke() tea.Cmd {
	m.prompt = &screen.Prompt{Level: 2, Title: "Run the smoke test?",
		Body: []string{
			"Creates the table public.pgreplica_smoke on the origin and on every replica (" + replicaNames(m) + "), captures it, INSERTs, UPDATEs and DELETEs one row on the origin and waits for each change on every replica. The table is dropped afterwards.",
			"No other table is touched. Way back: if it is left behind, DROP TABLE public.pgreplica_smoke on each database.",
		},
		OnYes: func() tea.Msg { return runSmokeMsg{} }}
	return nil
}

func replicaNames(m *Model) string {
	var n []string
	for _, r := range m.cfg.Replicas {
		n = append(n, r.Name)
	}
	return strings.Join(n, ", ")
}

func (m *Model) startSmoke() tea.Cmd {
	m.smoke = smokeStep{}
	cfg := *m.cfg
	timeout := m.deps.SmokeTimeout
	log := m.deps.EngineLog
	m.env.Audit("wizard: smoke test")
	return m.run(func(ctx context.Context, emit func(any)) (any, error) {
		// Use the daemon when one replays the set; else run an engine here
		// for the test.
		startEngine := true
		if smoke.EngineRunning(ctx, &cfg) {
			startEngine = false
			emit("a pgreplica engine is already replaying this set: using it")
		}
		res, err := smoke.Run(ctx, &cfg, smoke.Options{Timeout: timeout, StartEngine: startEngine, Log: log},
			func(s smoke.Step) { emit(s) }, func(s string) { emit(s) })
		return res, err
	})
}

func (m *Model) smokeDone(res any, err error) tea.Cmd {
	s := &m.smoke
	s.err = err
	if r, ok := res.(smoke.Result); ok {
		s.result = &r
	}
	if err != nil || s.result == nil || !s.result.OK() {
		m.states[stepSmoke] = failed
		return screen.Flash(screen.Bad, "smoke test failed · see the diagnosis · r runs it again")
	}
	m.states[stepSmoke] = done
	m.env.Audit("wizard: smoke test passed")
	return screen.Flash(screen.Good, "smoke test passed · enter continues")
}

func (m *Model) smokeView(w, h int) string {
	t := m.env.Theme
	g := t.Glyphs
	s := &m.smoke
	intro := "Creates a test table public.pgreplica_smoke on the origin and every replica, captures it, then INSERTs, UPDATEs and DELETEs a row on the origin and times each change until it is seen on every replica. The table is dropped afterwards."
	if s.result != nil || m.job != nil || s.err != nil {
		intro = "An INSERT, UPDATE and DELETE on public.pgreplica_smoke, timed until each is seen on every replica (the table is dropped afterwards)."
	}
	lines := screen.Wrap(intro, w)
	lines = append(lines, "")
	if s.result == nil && m.job == nil && s.err == nil {
		lines = append(lines, screen.Wrap("enter asks, then runs it (an engine runs in this process for the test unless a daemon replays the set).", w)...)
		return strings.Join(lines, "\n")
	}
	// The verdict first, then the changes one by one.
	switch {
	case s.err != nil:
		for _, l := range screen.Wrap(g.Cross+" "+s.err.Error(), w) {
			lines = append(lines, t.Err.Render(l))
		}
		lines = append(lines, "r runs it again (asks)")
	case s.result != nil && s.result.OK():
		var worst time.Duration
		for _, st := range s.result.Steps {
			worst = max(worst, st.Took)
		}
		for _, l := range screen.Wrap(g.Check+fmt.Sprintf(" smoke test passed: every change arrived on every replica (slowest %d ms) · enter continues", worst.Milliseconds()), w) {
			lines = append(lines, t.OK.Render(l))
		}
	case s.result != nil:
		lines = append(lines, t.Err.Render(g.Cross+" smoke test failed"))
		lines = append(lines, screen.Wrap("Why: "+s.result.Diagnosis, w)...)
		if s.result.Cleanup != "" {
			lines = append(lines, screen.Wrap("Left behind: "+s.result.Cleanup, w)...)
		}
		lines = append(lines, screen.Wrap("Try: fix the cause above, then r to run it again.", w)...)
	case m.job != nil && len(s.says) > 0:
		lines = append(lines, t.Dim.Render(screen.Fit(s.says[len(s.says)-1]+"…", w)))
	}
	if s.result != nil && s.result.OK() && s.result.Cleanup != "" {
		lines = append(lines, screen.Wrap("Note: "+s.result.Cleanup, w)...)
	}
	lines = append(lines, "", t.Title.Render("  "+screen.Fit("CHANGE", 9)+screen.Fit("REPLICA", 16)+"ARRIVED"))
	for _, st := range s.steps {
		if st.OK() {
			lines = append(lines, t.OK.Render(g.Check)+" "+screen.Fit(st.Op, 9)+screen.Fit(st.Replica, 16)+fmt.Sprintf("%d ms", st.Took.Milliseconds()))
		} else {
			lines = append(lines, t.Err.Render(g.Cross)+" "+screen.Fit(st.Op, 9)+screen.Fit(st.Replica, 16)+t.Err.Render(st.Err))
		}
	}
	return strings.Join(lines, "\n")
}
