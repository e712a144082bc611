// Package smoke proves a replication set works end to end: it makes a test
// table on the origin and every replica, captures it, and times an INSERT,
// an UPDATE and a DELETE on the origin until each is seen on every replica
// (PyReplica's "try a few INSERT/UPDATE/DELETE"), or says why not.
package smoke

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
)

// Table is the test table, created and dropped by Run.
var Table = pg.Table{Schema: "public", Name: "pgreplica_smoke"}

// Options tune a smoke test.
type Options struct {
	// Timeout is how long each change may take to reach every replica
	// (default 10s).
	Timeout time.Duration
	// StartEngine runs a replay engine in this process for the test; leave
	// it off when a daemon or another engine is replaying the set.
	StartEngine bool
	Log         *slog.Logger
}

// Step is one change seen (or not) on one replica.
type Step struct {
	Op      string // INSERT, UPDATE, DELETE
	Replica string
	Took    time.Duration // from the origin's commit to seen on the replica
	Err     string        // why it was not seen
}

// OK reports whether the change arrived.
func (s Step) OK() bool { return s.Err == "" }

// Result is the outcome of a smoke test.
type Result struct {
	Steps []Step
	// Diagnosis explains a failure and how to fix it.
	Diagnosis string
	// Cleanup says what was left behind, if anything.
	Cleanup string
}

// OK reports whether every change reached every replica.
func (r Result) OK() bool {
	if len(r.Steps) == 0 {
		return false
	}
	for _, s := range r.Steps {
		if !s.OK() {
			return false
		}
	}
	return true
}

// EngineRunning reports whether a pgreplica engine (a daemon, or another
// process) replays cfg's set now: the smoke test then uses it instead of
// starting one (Options.StartEngine).
func EngineRunning(ctx context.Context, cfg *config.Config) bool {
	rep, err := replay.QueryStatus(ctx, cfg)
	return err == nil && rep.DaemonRunning
}

const createSQL = `CREATE TABLE public.pgreplica_smoke (
    id   integer PRIMARY KEY,
    note text NOT NULL,
    at   timestamptz NOT NULL DEFAULT now()
)`

// Run runs the smoke test. report receives each step as it completes and
// lines of what is being done. The error is for a test that could not run
// at all (a database unreachable); a change that did not arrive is in the
// Result with a diagnosis.
func Run(ctx context.Context, cfg *config.Config, opt Options, report func(Step), say func(string)) (Result, error) {
	var res Result
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if report == nil {
		report = func(Step) {}
	}
	if say == nil {
		say = func(string) {}
	}
	if err := cfg.RequireReplicas(); err != nil {
		return res, err
	}
	origin, err := pg.ConnectOrigin(ctx, cfg, "smoke")
	if err != nil {
		return res, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	replicas := make([]*pgx.Conn, len(cfg.Replicas))
	for i, r := range cfg.Replicas {
		c, err := pg.ConnectReplica(ctx, r, "smoke")
		if err != nil {
			return res, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		replicas[i] = c
	}

	// A fresh table everywhere (a previous run may have left one).
	say("creating " + Table.String() + " on the origin and every replica")
	if err := dropOrigin(ctx, cfg, origin); err != nil {
		return res, err
	}
	for i, c := range replicas {
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+Table.Ident()+"; "+createSQL); err != nil {
			return res, fmt.Errorf("replica %s: create %s: %w", cfg.Replicas[i].Name, Table, err)
		}
	}
	if _, err := origin.Exec(ctx, createSQL); err != nil {
		return res, fmt.Errorf("origin: create %s: %w", Table, err)
	}
	if err := capture.AddTables(ctx, cfg, []pg.Table{Table}, func(l string) { say(l) }); err != nil {
		dropOrigin(context.WithoutCancel(ctx), cfg, origin)
		return res, fmt.Errorf("capture %s: %w", Table, err)
	}

	var eng *replay.Engine
	if opt.StartEngine {
		say("starting a replay engine in this process for the test")
		ectx, cancel := context.WithCancel(ctx)
		eng = replay.New(cfg, opt.Log, replay.Options{})
		done := make(chan struct{})
		go func() { defer close(done); eng.Run(ectx) }()
		defer func() { cancel(); <-done }()
	}

	changes := []struct {
		op, sql string
		seen    string // query on the replica, true when arrived
	}{
		{"INSERT", "INSERT INTO public.pgreplica_smoke (id, note) VALUES (1, 'inserted')", "SELECT EXISTS (SELECT 1 FROM public.pgreplica_smoke WHERE id = 1 AND note = 'inserted')"},
		{"UPDATE", "UPDATE public.pgreplica_smoke SET note = 'updated' WHERE id = 1", "SELECT EXISTS (SELECT 1 FROM public.pgreplica_smoke WHERE id = 1 AND note = 'updated')"},
		{"DELETE", "DELETE FROM public.pgreplica_smoke WHERE id = 1", "SELECT NOT EXISTS (SELECT 1 FROM public.pgreplica_smoke WHERE id = 1)"},
	}
	failed := false
	for _, ch := range changes {
		if failed {
			break
		}
		say(ch.op + " on the origin")
		if _, err := origin.Exec(ctx, ch.sql); err != nil {
			return res, fmt.Errorf("origin: %s: %w", ch.op, err)
		}
		committed := time.Now()
		steps := make([]Step, len(replicas))
		var wg sync.WaitGroup
		for i, c := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				steps[i] = wait(ctx, c, ch.op, cfg.Replicas[i].Name, ch.seen, committed, opt.Timeout)
			}()
		}
		wg.Wait()
		for _, s := range steps {
			res.Steps = append(res.Steps, s)
			report(s)
			if !s.OK() {
				failed = true
			}
		}
	}
	if failed {
		res.Diagnosis = diagnose(context.WithoutCancel(ctx), cfg, eng)
	}
	res.Cleanup = cleanup(context.WithoutCancel(ctx), cfg, origin, replicas, !failed)
	return res, nil
}

func wait(ctx context.Context, c *pgx.Conn, op, name, q string, since time.Time, timeout time.Duration) Step {
	st := Step{Op: op, Replica: name}
	deadline := since.Add(timeout)
	for {
		var ok bool
		if err := c.QueryRow(ctx, q).Scan(&ok); err != nil {
			st.Err = err.Error()
			return st
		}
		if ok {
			st.Took = time.Since(since)
			return st
		}
		if time.Now().After(deadline) {
			st.Err = fmt.Sprintf("not seen within %s", timeout)
			return st
		}
		select {
		case <-ctx.Done():
			st.Err = "cancelled"
			return st
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// diagnose says why changes did not arrive.
func diagnose(ctx context.Context, cfg *config.Config, eng *replay.Engine) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var why []string
	if eng != nil {
		for _, s := range eng.Status() {
			if s.Err != "" {
				why = append(why, fmt.Sprintf("replica %s: the engine is %s: %s", s.Name, s.State, s.Err))
			}
		}
	}
	rep, err := replay.QueryStatus(ctx, cfg)
	if err != nil {
		return strings.Join(append(why, "cannot read the status: "+err.Error()), "; ")
	}
	if eng == nil && !rep.DaemonRunning {
		why = append(why, "no replay engine is running for set "+cfg.Name+": start one (pgreplica run, or the systemd unit) or let the test start one")
	}
	for _, r := range rep.Replicas {
		switch {
		case !r.Reachable:
			why = append(why, fmt.Sprintf("replica %s is unreachable: %s", r.Name, r.Error))
		case r.Error != "":
			why = append(why, fmt.Sprintf("replica %s: %s", r.Name, r.Error))
		case r.Pending > 0:
			why = append(why, fmt.Sprintf("replica %s has %d events waiting (lag %s): replay is behind or stopped", r.Name, r.Pending, r.Lag.Round(time.Millisecond)))
		}
	}
	if len(why) == 0 {
		why = append(why, "the changes were captured but not applied in time; look at the log (pgreplica run) for errors")
	}
	return strings.Join(why, "; ")
}

// cleanup removes the test table. The replicas' copies are dropped only
// when every change arrived: with events still waiting, dropping the table
// there would stop replay.
func cleanup(ctx context.Context, cfg *config.Config, origin *pgx.Conn, replicas []*pgx.Conn, all bool) string {
	if err := dropOrigin(ctx, cfg, origin); err != nil {
		return "could not drop " + Table.String() + " on the origin: " + err.Error()
	}
	if !all {
		return Table.String() + " was left on the replicas: drop it there once replay has caught up"
	}
	for i, c := range replicas {
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+Table.Ident()); err != nil {
			return fmt.Sprintf("could not drop %s on replica %s: %v", Table, cfg.Replicas[i].Name, err)
		}
	}
	return ""
}

func dropOrigin(ctx context.Context, cfg *config.Config, origin *pgx.Conn) error {
	var exists bool
	if err := origin.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", Table.Ident()).Scan(&exists); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if !exists {
		return nil
	}
	if v, _ := capture.SchemaVersion(ctx, origin); v != "" {
		if err := capture.RemoveTables(ctx, cfg, []pg.Table{Table}, func(string) {}); err != nil && !strings.Contains(err.Error(), "not") {
			return err
		}
	}
	if _, err := origin.Exec(ctx, "DROP TABLE "+Table.Ident()); err != nil {
		return fmt.Errorf("origin: drop %s: %w", Table, err)
	}
	return nil
}

var _ = errors.New
