package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/demo"
	"pgreplica/core/logring"
	"pgreplica/core/pgcluster"
	"pgreplica/core/replay"
	"pgreplica/tui"
	"pgreplica/tui/source"
	"pgreplica/tui/theme"
)

func (a *app) demoCommand() *cobra.Command {
	var (
		noTUI    bool
		duration time.Duration
		rate     float64
		color    string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "See pgreplica work on two throwaway local PostgreSQL clusters",
		Long: `Starts two throwaway PostgreSQL clusters in temporary directories (with the
machine's initdb and pg_ctl; as root the servers run as the postgres user),
creates a small sample shop with data on both, installs capture, runs a
gentle write workload on the origin and opens the replication monitor.
Quitting stops and removes everything.

With --no-tui it runs the same headless for --duration, printing progress,
then lets the replica catch up and compares it with the origin row by row:
exit 0 only when they are equal.`,
		Example: "  pgreplica demo\n  pgreplica demo --no-tui --duration 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rate <= 0 || rate > 1000 {
				return usagef("--rate must be between 0 and 1000 transactions a second (got %g)", rate)
			}
			headless := noTUI || !isTerminal(a.stdout) || !isTerminal(a.stdin)
			if headless && duration == 0 {
				duration = 20 * time.Second
			}
			return a.runDemo(cmd.Context(), headless, duration, rate, color)
		},
	}
	cmd.Flags().BoolVar(&noTUI, "no-tui", false, "run headless, printing progress, then verify the replica")
	cmd.Flags().DurationVar(&duration, "duration", 0, "how long the workload runs (default 20s with --no-tui; until you quit in the TUI)")
	cmd.Flags().Float64Var(&rate, "rate", 3, "write transactions a second on the origin")
	cmd.Flags().StringVar(&color, "color", "auto", "colour in the TUI: auto, always or never")
	return cmd
}

func (a *app) runDemo(ctx context.Context, headless bool, duration time.Duration, rate float64, color string) error {
	say := func(s string) { fmt.Fprintln(a.stderr, "demo: "+s) }
	d, err := demo.Start(ctx, say)
	if err != nil {
		if errors.Is(err, pgcluster.ErrNoServer) {
			return withHint(errors.New("the demo needs the PostgreSQL server programs (initdb, pg_ctl, postgres), and they are not installed"),
				"apt-get install -y postgresql (Debian/Ubuntu), dnf install postgresql-server (Fedora), brew install postgresql (macOS); or set PG_BINDIR to their directory")
		}
		return err
	}
	defer func() {
		say("stopping and removing both clusters…")
		d.Stop()
	}()
	if headless {
		return a.demoHeadless(ctx, d, duration, rate, say)
	}
	say("opening the monitor · q quits and removes everything")
	wctx, stopWork := context.WithCancel(ctx)
	if duration > 0 {
		wctx, stopWork = context.WithTimeout(ctx, duration)
	}
	defer stopWork()
	ring := logring.New(20000)
	logger := uiLogger(ring)
	go func() {
		if _, err := demo.Workload(wctx, d.Config.Origin.DSN, rate, nil); err != nil {
			logger.Error("demo workload stopped", "err", err)
		}
	}()
	mono, ascii := theme.Detect(color, os.Getenv)
	m := tui.NewApp(tui.AppOptions{
		Config: d.Config, Theme: theme.New(mono, ascii), Version: version, Ring: ring, Log: logger,
		Source: source.NewEngine(d.Config, ring, logger), StartEngine: true,
		EngineNote: "The demo's two clusters are removed when it ends.",
	})
	return runProgram(ctx, m, color, a.stdout)
}

func (a *app) demoHeadless(ctx context.Context, d *demo.Demo, duration time.Duration, rate float64, say func(string)) error {
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ectx, stopEngine := context.WithCancel(ctx)
	eng := replay.New(d.Config, log, replay.Options{})
	engineDone := make(chan error, 1)
	go func() { engineDone <- eng.Run(ectx) }()
	defer func() {
		stopEngine()
		<-engineDone
	}()

	say(fmt.Sprintf("replicating; workload of %g transactions/s for %s", rate, duration))
	wctx, stopWork := context.WithTimeout(ctx, duration)
	defer stopWork()
	var txs atomic.Int64
	workDone := make(chan error, 1)
	go func() {
		_, err := demo.Workload(wctx, d.Config.Origin.DSN, rate, func(s demo.WorkloadStats) { txs.Store(s.Transactions) })
		workDone <- err
	}()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	start := time.Now()
loop:
	for {
		select {
		case err := <-workDone:
			if err != nil {
				return err
			}
			break loop
		case <-t.C:
			a.demoProgress(ctx, d, start, txs.Load())
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	say("workload done; waiting for the replica to catch up…")
	deadline := time.Now().Add(60 * time.Second)
	for {
		rep, err := replay.QueryStatus(ctx, d.Config)
		if err == nil && len(rep.Replicas) > 0 && rep.Replicas[0].Reachable && rep.Replicas[0].Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the replica did not catch up within 60s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	cmp, err := demo.Compare(ctx, d.Config, demo.Tables)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if !cmp.Equal() {
		for _, x := range cmp.Differences {
			fmt.Fprintf(a.stderr, "demo: %s differs on %s: %s\n", x.Table, x.Replica, x.Detail)
		}
		return &codeError{code: exitProblems, err: fmt.Errorf("replica differs from the origin in %d of %d tables", len(cmp.Differences), cmp.Tables)}
	}
	fmt.Fprintf(a.stdout, "demo: OK replica equals origin: %d tables, %d rows compared by pgreplica verify after %d write transactions\n",
		cmp.Tables, cmp.Rows, txs.Load())
	return nil
}

func (a *app) demoProgress(ctx context.Context, d *demo.Demo, start time.Time, txs int64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rep, err := replay.QueryStatus(ctx, d.Config)
	el := time.Since(start).Round(time.Second)
	if err != nil || len(rep.Replicas) == 0 {
		fmt.Fprintf(a.stdout, "%6s  %d write transactions on the origin · status: %v\n", el, txs, err)
		return
	}
	r := rep.Replicas[0]
	fmt.Fprintf(a.stdout, "%6s  %d write transactions on the origin · %s: applied %d events, pending %d, lag %s\n",
		el, txs, r.Name, r.Position.AppliedEvents, r.Pending, r.Lag.Round(time.Millisecond))
}
