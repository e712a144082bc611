package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/replay"
)

// kindStream profiles the engine streaming during a full-speed pgbench run.
const kindStream = "stream"

// Profile builds each apply backlog once and applies it with the engine
// running in this process under the CPU profiler, with pg_stat_statements
// on both servers. It writes to o.ProfileDir: cpu-<backlog>.pprof,
// top-<backlog>.txt (go tool pprof -top) and pgss-<backlog>.txt (the
// statements that took the most time on the origin and the replica); and
// the same for the engine streaming (Run) while pgbench runs TPC-B at full
// speed for --seconds (cpu-stream.pprof...).
func Profile(ctx context.Context, o Options) error {
	o.defaults()
	if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
		return err
	}
	saved := serverSettings
	serverSettings = append(append([]string{}, saved...),
		"shared_preload_libraries = 'pg_stat_statements'", "pg_stat_statements.track = all")
	defer func() { serverSettings = saved }()
	o.WithSlony = false
	e, err := setup(ctx, o)
	if err != nil {
		return err
	}
	defer e.close()
	for _, c := range []*pgx.Conn{e.og, e.reps["pgreplica"]} {
		if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
			return err
		}
	}
	cfg, err := config.Load(e.config)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, kind := range []string{kindTPCB, kindInserts, kindStream} {
		if err := e.reset(ctx); err != nil {
			return err
		}
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return err
		}
		if err := e.pgreplicaCatchUp(ctx); err != nil {
			return err
		}
		var changes int64
		if kind != kindStream {
			e.logf("profile: building the %s backlog", kind)
			if changes, _, err = e.backlog(ctx, kind); err != nil {
				return err
			}
		}
		for _, c := range []*pgx.Conn{e.og, e.reps["pgreplica"]} {
			if _, err := c.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
				return err
			}
		}
		path := filepath.Join(o.ProfileDir, "cpu-"+kind+".pprof")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		start := time.Now()
		var summary string
		if kind == kindStream {
			// The engine streaming (Run) while pgbench runs TPC-B at full speed.
			runCtx, stopRun := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); replay.New(cfg, log, replay.Options{}).Run(runCtx) }()
			time.Sleep(time.Second)
			before, _ := e.appliedEvents(ctx)
			r, err := e.pgbench(ctx, e.origin, originDB, append(e.tpcbArgs(), "-T", strconv.Itoa(e.opt.Seconds))...)
			stopRun()
			<-done
			pprof.StopCPUProfile()
			f.Close()
			if err != nil {
				return err
			}
			after, _ := e.appliedEvents(ctx)
			summary = fmt.Sprintf("stream: engine Run in process during pgbench TPC-B -T %d: %.0f tps, %d events applied (%d transactions) in %.1fs\n",
				e.opt.Seconds, r.TPS, after-before, r.Txns, time.Since(start).Seconds())
		} else {
			n, err := replay.New(cfg, log, replay.Options{}).Once(ctx)
			took := time.Since(start)
			pprof.StopCPUProfile()
			f.Close()
			if err != nil {
				return fmt.Errorf("engine: %w", err)
			}
			summary = fmt.Sprintf("%s backlog: %d events (%d row changes) applied in process in %.2fs: %.0f events/s\n",
				kind, n, changes, took.Seconds(), float64(n)/took.Seconds())
		}
		e.logf("profile: %s", strings.TrimSpace(summary))
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", path).CombinedOutput()
		if err != nil {
			top = append(top, []byte("\n(go tool pprof failed: "+err.Error()+")\n")...)
		}
		cum, _ := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=40", path).CombinedOutput()
		if err := os.WriteFile(filepath.Join(o.ProfileDir, "top-"+kind+".txt"),
			[]byte(summary+"\n"+string(top)+"\n--- by cumulative time ---\n"+string(cum)), 0o644); err != nil {
			return err
		}
		var pgss strings.Builder
		pgss.WriteString(summary)
		for _, side := range []struct {
			name string
			c    *pgx.Conn
		}{{"origin", e.og}, {"replica", e.reps["pgreplica"]}} {
			fmt.Fprintf(&pgss, "\n== %s: top statements by total time ==\n", side.name)
			rows, err := side.c.Query(ctx, `SELECT calls, round(total_exec_time::numeric, 1), rows,
					round((shared_blks_hit + shared_blks_read)::numeric / greatest(calls, 1), 1),
					regexp_replace(left(query, 300), '\s+', ' ', 'g')
				FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15`)
			if err != nil {
				return err
			}
			for rows.Next() {
				var calls, nrows int64
				var total, blks float64
				var q string
				if err := rows.Scan(&calls, &total, &nrows, &blks, &q); err != nil {
					rows.Close()
					return err
				}
				fmt.Fprintf(&pgss, "%10d calls %10.1f ms %10d rows %8.1f blks/call  %s\n", calls, total, nrows, blks, q)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(o.ProfileDir, "pgss-"+kind+".txt"), []byte(pgss.String()), 0o644); err != nil {
			return err
		}
	}
	e.logf("profile: wrote %s", o.ProfileDir)
	return nil
}
