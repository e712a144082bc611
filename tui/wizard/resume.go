package wizard

import (
	"context"
	"fmt"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/tui/screen"
)

// resumeState is where the databases are, found when the wizard starts
// (core reads it: capture.ReadProgress).
type resumeState struct {
	capture   string     // installed capture version on the origin, "" when none
	installed []pg.Table // tables with an installed capture trigger
	// synced: every installed table has been copied to every replica
	// (pgreplica.table_state has it, in any state but copying).
	synced bool
}

// detect reads the databases' state; errors leave what was read before
// them (the wizard then starts earlier, which is safe: every step
// re-checks).
func detect(ctx context.Context, cfg *config.Config) resumeState {
	p, _ := capture.ReadProgress(ctx, cfg, "wizard")
	return resumeState{capture: p.Capture, installed: p.Installed, synced: p.Synced}
}

// resume marks the steps the databases show as done and moves to the first
// step left to do.
func (m *Model) resume(rs resumeState) tea.Cmd {
	if rs.capture == "" {
		return nil
	}
	m.states[stepBackup] = done
	m.notes[stepBackup] = "capture is already installed: the backup step is behind you"
	if len(rs.installed) == 0 {
		m.cur = stepPick
		return m.enter()
	}
	m.pick.preselect = rs.installed
	m.states[stepPick], m.states[stepInstall] = done, done
	m.install.lines = []string{"capture is installed on the origin (version " + rs.capture + ")"}
	for _, t := range rs.installed {
		m.install.lines = append(m.install.lines, "  trigger on "+t.String())
	}
	m.pick.confirmed = rs.installed
	m.cur = stepCopy
	if rs.synced {
		m.states[stepCopy] = done
		m.notes[stepCopy] = "every captured table has been copied to every replica"
		m.cur = stepSmoke
	}
	m.copy.prepare(m)
	return tea.Batch(m.loadTables(), screen.Flash(screen.Info, fmt.Sprintf("resumed at step %d: the databases show steps before it done", m.cur+1)))
}
