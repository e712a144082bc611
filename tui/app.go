package tui

import (
	"context"
	"log/slog"
	"time"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/conflict"
	"pgreplica/core/logring"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/tui/conflicts"
	"pgreplica/tui/logpane"
	"pgreplica/tui/monitor"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
	"pgreplica/tui/tables"
	"pgreplica/tui/theme"
)

// AppOptions describe the TUI as pgreplica opens it.
type AppOptions struct {
	Config   *config.Config
	Theme    *theme.Theme
	ReadOnly bool
	Version  string
	Ring     *logring.Ring
	Log      *slog.Logger
	// Source is the engine here or a daemon; nil makes an engine source.
	Source source.Source
	// Wizard, when set, is shown first.
	Wizard screen.Screen
	// StartEngine starts the engine in this process at once (the demo).
	StartEngine bool
	// EngineNote replaces, in the quit confirmation and on exit, the advice
	// to run the daemon (the demo removes its databases on exit).
	EngineNote string
	// Who is the user of a session served over SSH (nil: this terminal).
	Who *screen.Who
	// Report reads replication status from the databases; nil queries
	// them for this TUI alone (SSH sessions share one).
	Report func(ctx context.Context) (replay.Report, error)
	// Switchover makes a replica the origin (pgreplica switchover --to),
	// reporting its progress line by line; nil hides the action.
	Switchover func(ctx context.Context, replica string, report func(string)) error
}

// NewApp builds the root model with the four screens wired to core.
func NewApp(o AppOptions) *Model {
	env := &screen.Env{Theme: o.Theme, Config: o.Config, ReadOnly: o.ReadOnly, Now: time.Now, Log: o.Log, Who: o.Who}
	src := o.Source
	if src == nil {
		src = source.NewEngine(o.Config, o.Ring, o.Log)
	}
	cfg := o.Config
	deps := tables.Deps{
		List: func(ctx context.Context) ([]capture.TableInfo, error) {
			// Every user table: those the config leaves out are shown
			// as not replicated, with why. On a multi-master set, the
			// first node's (every node has the same tables), with its
			// changes' progress on the others.
			c := cfg
			if c != nil && c.MultiMaster() {
				c = cfg.Directions("")[0]
			}
			t, _, err := replay.ListTables(ctx, c, "tui", capture.UserTables)
			return t, err
		},
		Install: func(ctx context.Context, t pg.Table, report func(string)) error {
			return capture.AddTables(ctx, cfg, []pg.Table{t}, report)
		},
		Remove: func(ctx context.Context, t pg.Table, report func(string)) error {
			return capture.RemoveTables(ctx, cfg, []pg.Table{t}, report)
		},
	}
	if o.ReadOnly || cfg != nil && cfg.MultiMaster() {
		// Not only hidden: a read-only TUI has no way to change a database
		// (and a multi-master set's tables are installed on every node by
		// pgreplica install).
		deps.Install, deps.Remove = nil, nil
	}
	tab := tables.New(env, deps)
	mon := monitor.New(env, src.Startable())
	mdeps := monitor.Deps{
		Why: func(ctx context.Context, replica string) (replay.Diagnosis, error) {
			return replay.Diagnose(ctx, cfg, replica, cfg.Batch.MaxEvents)
		},
		Skip: func(ctx context.Context, replica string, id int64, by string) error {
			s, err := replay.ReadEvent(ctx, cfg, replica, id)
			if err != nil {
				return err
			}
			s.By, s.Reason = by, "skipped in the TUI"
			return replay.Skip(ctx, cfg, s)
		},
	}
	if r, ok := src.(source.Retrier); ok {
		mdeps.Retry = r.Retry
	}
	mdeps.Switchover = o.Switchover
	mon.SetDeps(mdeps)
	con := conflicts.New(env, conflicts.Deps{
		Read: func(ctx context.Context) ([]conflicts.Conflict, []error) { return conflict.List(ctx, cfg, "", "tui") },
		Row: func(ctx context.Context, c conflicts.Conflict) (map[string]string, error) {
			return conflict.CurrentRow(ctx, cfg, c, "tui")
		},
		Resolve: func(ctx context.Context, c conflicts.Conflict, choice string) (string, error) {
			return conflict.Resolve(ctx, cfg, c, choice, "tui")
		},
	})
	logs := logpane.NewScreen(env)
	report := o.Report
	if report == nil {
		report = func(ctx context.Context) (replay.Report, error) {
			if len(cfg.Replicas) == 0 && !cfg.MultiMaster() {
				return replay.Report{}, nil
			}
			return replay.QueryStatus(ctx, cfg)
		}
	}
	m := New(Options{
		Env:     env,
		Source:  src,
		Version: o.Version,
		Live:    true,
		Monitor: 1,
		Wizard:  o.Wizard,
		Report:  report,
		Tabs: []Tab{
			{Name: "Tables", Screen: tab},
			{Name: "Monitor", Screen: mon},
			{Name: "Conflicts", Screen: con, Badge: func() string {
				if n := con.Count(); n > 0 {
					return screen.Count(int64(n))
				}
				return ""
			}},
			{Name: "Log", Screen: logs},
		},
	})
	if o.Wizard == nil {
		m.active = 1
	}
	m.startEngine = o.StartEngine
	m.opt.EngineNote = o.EngineNote
	return m
}
