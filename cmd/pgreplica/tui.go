package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/spf13/cobra"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/logring"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/switchover"
	"pgreplica/core/tablecopy"
	"pgreplica/tui"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
	"pgreplica/tui/theme"
	"pgreplica/tui/wizard"
)

// tuiOptions are the flags of `pgreplica tui`.
type tuiOptions struct {
	readOnly bool
	color    string
	wizard   bool
}

func (a *app) tuiCommand() *cobra.Command {
	var o tuiOptions
	cmd := &cobra.Command{
		Use:   "tui",
		Short: "Open the operator's terminal UI (also: no arguments)",
		Long: `Opens the terminal UI: the install wizard when pgreplica is not installed yet
(or with --wizard), else the tables, the replication monitor with its live log,
and the conflicts. With control.socket set and a daemon listening there, the
monitor attaches to the daemon; otherwise the engine can run in this process
(S on the monitor), and quitting stops it after the batch in flight.

Colour follows --color; auto honours NO_COLOR and TERM=dumb.`,
		Example: "  pgreplica -c shop.yaml tui\n  pgreplica tui --wizard --origin 'host=db1 dbname=shop' --replica 'host=db2 dbname=shop'\n  NO_COLOR=1 pgreplica tui --read-only",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch o.color {
			case "auto", "always", "never":
			default:
				return usagef("--color must be auto, always or never (got %q)", o.color)
			}
			if !isTerminal(a.stdout) || !isTerminal(a.stdin) {
				return usagef("the TUI needs a terminal; use the subcommands (pgreplica --help) in scripts")
			}
			return a.openTUI(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.readOnly, "read-only", false, "hide every action that changes a database")
	cmd.Flags().StringVar(&o.color, "color", "auto", "colour: auto, always or never")
	cmd.Flags().BoolVar(&o.wizard, "wizard", false, "open the install wizard")
	return cmd
}

// uiLogger sends the log records of this process at INFO and above to the
// ring (and never to the terminal, which the TUI owns): batches are DEBUG,
// summed once per replay.SummaryEvery at INFO, so the ring keeps minutes
// of state changes and errors instead of seconds of batches.
func uiLogger(ring *logring.Ring) *slog.Logger {
	l := slog.New(ring.Handler(slog.LevelInfo))
	slog.SetDefault(l)
	log.SetOutput(io.Discard)
	return l
}

func (a *app) openTUI(ctx context.Context, o tuiOptions) error {
	ring := logring.New(20000)
	logger := uiLogger(ring)
	mono, ascii := theme.Detect(o.color, os.Getenv)
	th := theme.New(mono, ascii)

	cfg, cfgErr := a.loadConfig()
	wizard := o.wizard || cfgErr != nil
	if cfgErr == nil && !wizard {
		wizard = needsWizard(ctx, cfg)
	}
	if cfg == nil {
		cfg = &config.Config{}
		*cfg = config.Default()
	}
	opts := tui.AppOptions{Config: cfg, Theme: th, ReadOnly: o.readOnly, Version: version, Ring: ring, Log: logger}
	if src := daemonSource(ctx, cfg); src != nil {
		opts.Source = src
	}
	if cfg.Path != "" && !o.readOnly {
		opts.Switchover = func(ctx context.Context, replica string, report func(string)) error {
			return runSwitchover(ctx, cfg.Path, switchover.Options{To: replica, Environ: os.Environ(), Report: report})
		}
	}
	if wizard && !o.readOnly {
		w, err := a.newWizard(cfg, cfgErr, th, logger, ring)
		if err != nil {
			return err
		}
		if w != nil {
			opts.Wizard = w
		}
	}
	return runProgram(ctx, tui.NewApp(opts), o.color, a.stdout)
}

// runProgram runs the TUI until it quits and prints what it leaves behind.
func runProgram(ctx context.Context, m *tui.Model, color string, out io.Writer) error {
	popts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithFPS(30)}
	switch color {
	case "never":
		popts = append(popts, tea.WithColorProfile(colorprofile.Ascii))
	case "always":
		popts = append(popts, tea.WithColorProfile(colorprofile.ANSI256))
	}
	_, err := tea.NewProgram(m, popts...).Run()
	if text := m.ExitText(); text != "" {
		fmt.Fprintln(out, text)
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// needsWizard is true when capture is not installed on the origin yet (an
// unreachable origin opens the screens, which say so).
func needsWizard(ctx context.Context, cfg *config.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := replay.QueryStatus(ctx, cfg)
	return errors.Is(err, replay.ErrNotInstalled)
}

func (a *app) newWizard(cfg *config.Config, cfgErr error, th *theme.Theme, log *slog.Logger, ring *logring.Ring) (screen.Screen, error) {
	path := a.configPath
	if path == "" {
		if found, err := config.Find(""); err == nil && found != "" {
			path = found
		} else {
			path = "pgreplica.yaml"
		}
	}
	if cfgErr != nil && a.configPath != "" {
		if _, err := os.Stat(a.configPath); err == nil {
			return nil, cfgErr // a config that exists but does not load: say why
		}
	}
	bin, err := os.Executable()
	if err != nil {
		bin = "pgreplica"
	}
	env := &screen.Env{Theme: th, Config: cfg, Now: time.Now, Log: log}
	return wizard.New(env, cfg, wizard.Deps{
		ConfigPath: path,
		Binary:     bin,
		EngineLog:  log,
		ReplicaRows: func(ctx context.Context, cfg *config.Config, tables []pg.Table) (map[string]map[pg.Table]int64, error) {
			return capture.ReplicaRows(ctx, cfg, tables, "wizard")
		},
		CreateTables: tablecopy.CreateMissing,
		Copy: func(ctx context.Context, cfg *config.Config, tables []pg.Table, progress func(wizard.CopyProgress)) error {
			return tablecopy.Sync(ctx, cfg, tablecopy.Options{Tables: tables}, func(p tablecopy.Progress) {
				progress(wizard.CopyProgress{Replica: p.Replica, Table: p.Table, Rows: p.Rows, TotalRows: p.TotalRows, Bytes: p.Bytes, Done: p.Done})
			})
		},
	}, cfgErr), nil
}

// daemonSource attaches to the daemon when control.socket is set and a
// daemon answers there.
func daemonSource(ctx context.Context, cfg *config.Config) source.Source {
	if cfg.Control.Socket == "" {
		return nil
	}
	c := control.Dial(cfg.Control.Socket)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := c.Status(ctx); err != nil {
		return nil
	}
	return &source.Daemon{Client: c}
}
