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

// resumeState is where the databases are, found when the wizard starts.
type resumeState struct {
	capture   string     // installed capture version on the origin, "" when none
	installed []pg.Table // tables with an installed capture trigger
	// synced: every installed table has been copied to every replica
	// (pgreplica.table_state has it, in any state but copying).
	synced bool
}

// detect reads the databases' state; errors leave the zero state (the
// wizard then starts from the beginning, which is safe: every step
// re-checks).
func detect(ctx context.Context, cfg *config.Config) resumeState {
	var rs resumeState
	conn, err := pg.ConnectOrigin(ctx, cfg, "wizard")
	if err != nil {
		return rs
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rs.capture, _ = capture.SchemaVersion(ctx, conn)
	if rs.capture == "" {
		return rs
	}
	tables, err := capture.ListTables(ctx, conn, userTables)
	if err != nil {
		return rs
	}
	for _, t := range tables {
		if t.Status == capture.Installed {
			rs.installed = append(rs.installed, t.Table)
		}
	}
	rs.synced = len(rs.installed) > 0
	for _, r := range cfg.Replicas {
		rc, err := pg.ConnectReplica(ctx, r, "wizard")
		if err != nil {
			rs.synced = false
			break
		}
		for _, t := range rs.installed {
			var ok bool
			err := rc.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgreplica.table_state
			    WHERE set_name = $1 AND schema_name = $2 AND table_name = $3 AND state <> 'copying')`,
				cfg.Name, t.Schema, t.Name).Scan(&ok)
			if err != nil || !ok {
				rs.synced = false
				break
			}
		}
		rc.Close(context.WithoutCancel(ctx))
	}
	return rs
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
