// Package switchover moves the origin role of a replication set to one of
// its replicas with nothing lost: `pgreplica switchover --to R`.
//
// The work is a plan of persisted steps (Step): fence the origin's
// replicated tables, let every replica apply everything, set R's
// sequences, install capture on R with every position at one snapshot of
// R (the old origin becomes a replica there), rewrite the config file, lift
// the fences, verify. The step reached is kept in a state file next to the
// config (State); every step's database work is idempotent, so Resume runs
// the interrupted step again and goes on, and Abort undoes what was done as
// long as no fence was lifted. The replay engine must not run meanwhile:
// Prepare, Resume and Abort refuse while a daemon of the set is running.
package switchover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/verify"
	pgsql "pgreplica/sql"
)

// Options are a switchover's choices.
type Options struct {
	To      string        // the replica that becomes the origin
	As      string        // the old origin's name as a replica; "" = To's name (the two swap places)
	MaxLag  time.Duration // refuse when a replica lags more than this
	Timeout time.Duration // how long the fenced catch-up may take
	Environ []string      // the process environment: DSNs given there cannot be rewritten
	// Report receives one line per thing done, for the operator.
	Report func(line string)
	// AfterStep is called after each step is recorded as done. Tests use
	// it to stop the process there; nil otherwise.
	AfterStep func(Step)
	// At is called at named points inside the promote step (PromotePoints),
	// for the same tests; nil otherwise.
	At func(point string)
	// Now is the clock (the backup's name); nil = time.Now.
	Now func() time.Time
}

// PromotePoints are the points inside the promote step where Options.At
// is called: after the positions were saved, after the old origin's
// capture was removed, after capture was installed on the new origin,
// after the new origin's registry was written.
var PromotePoints = []string{"promote.saved", "promote.uncaptured", "promote.installed", "promote.registered"}

// FailoverPoints are the points of a failover where Options.At is called:
// after its promote step.
var FailoverPoints = []string{"failover.promoted"}

func (o *Options) at(point string) {
	if o.At != nil {
		o.At(point)
	}
}

// Defaults of MaxLag and Timeout.
const (
	DefaultMaxLag  = 30 * time.Second
	DefaultTimeout = time.Minute
)

// Plan is a checked switchover, ready to Run.
type Plan struct {
	st       *State
	old, new *config.Config
	opt      Options
	lines    []string
	tables   []pg.Table
}

// Lines is the plan, one line per step, for the operator (and --dry-run).
func (p *Plan) Lines() []string { return p.lines }

// State is the state the plan will persist.
func (p *Plan) State() State { return *p.st }

func (o *Options) report(s string) {
	if o.Report != nil {
		o.Report(s)
	}
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Prepare checks that the switchover of the set of the config file at
// path to opt.To can be made, and returns its plan. It changes nothing: it
// refuses, with one line, a replica that is not one of the set, a running
// daemon, a replica that lags more than opt.MaxLag or that cannot be read,
// tables being copied, and replicas whose tables differ from the origin's
// (verify).
func Prepare(ctx context.Context, path string, opt Options) (*Plan, error) {
	if opt.MaxLag <= 0 {
		opt.MaxLag = DefaultMaxLag
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	old, err := loadToMove("switchover", path, opt.Environ)
	if err != nil {
		return nil, err
	}
	if opt.As == "" {
		opt.As = opt.To
	}
	newCfg, err := swapped(old, opt.To, opt.As)
	if err != nil {
		return nil, err
	}
	p := &Plan{old: old, new: newCfg, opt: opt}
	p.st = &State{Set: old.Name, To: opt.To, As: opt.As, Config: path,
		MaxLag: opt.MaxLag.String(), Timeout: opt.Timeout.String()}
	if err := noDaemon(ctx, old, newCfg); err != nil {
		return nil, err
	}
	if err := p.checkReplicas(ctx); err != nil {
		return nil, err
	}
	p.lines = p.describe()
	return p, nil
}

// swapped is the config after the switchover of old to replica to, the
// old origin becoming replica as.
// loadToMove loads the config file at path for a switchover or a failover
// (cmd), which rewrite it: refused without a file, while a switchover is
// under way, and with DSNs from the environment.
func loadToMove(cmd, path string, environ []string) (*config.Config, error) {
	if path == "" {
		return nil, fmt.Errorf("%s rewrites the config file: name it with -c FILE (--origin and --replica cannot be rewritten)", cmd)
	}
	if st, err := ReadState(path); err != nil {
		return nil, err
	} else if st != nil {
		return nil, fmt.Errorf("a switchover of set %s to %s is under way (done: %s); finish it with pgreplica switchover --resume or undo it with --abort", st.Set, st.To, st.Done)
	}
	if err := noEnvDSN(environ); err != nil {
		return nil, err
	}
	old, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := old.RequireReplicas(); err != nil {
		return nil, err
	}
	return old, nil
}

// candidate finds replica to in old and checks that it can become the
// origin (cmd is "switchover" or "failover", for the errors): a one-way
// set without file replicas, and a replica that holds the whole data (no
// table rules: a projection cannot become the origin). It returns its
// index and the replicas' names.
func candidate(cmd string, old *config.Config, to string) (int, []string, error) {
	if old.MultiMaster() {
		return 0, nil, fmt.Errorf("%s: set %s is a multi-master set (nodes:): every node already takes writes, there is no origin role to move", cmd, old.Name)
	}
	var names []string
	idx := -1
	for i, r := range old.Replicas {
		names = append(names, r.Name)
		if r.Name == to {
			idx = i
		}
		if r.File {
			return 0, nil, fmt.Errorf("%s: replica %s is a file replica, which cannot follow a new origin; remove it from the set first (and export what it lacks)", cmd, r.Name)
		}
	}
	if idx < 0 {
		return 0, nil, fmt.Errorf("%s --to %s: the set %s has no replica %s (its replicas: %s)", cmd, to, old.Name, to, strings.Join(names, ", "))
	}
	if len(old.Replicas[idx].Tables) > 0 {
		return 0, nil, fmt.Errorf("%s --to %s: replica %s has table rules (replicas[].tables: filters, columns or targets), so it holds only part of the origin's data and cannot become the origin", cmd, to, to)
	}
	return idx, names, nil
}

func swapped(old *config.Config, to, as string) (*config.Config, error) {
	idx, names, err := candidate("switchover", old, to)
	if err != nil {
		return nil, err
	}
	if as != to && slices.Contains(names, as) {
		return nil, fmt.Errorf("switchover --as %s: the set has a replica %s already; choose another name for the old origin", as, as)
	}
	n := *old
	n.Replicas = slices.Clone(old.Replicas)
	r := old.Replicas[idx]
	n.Origin.DSN = r.DSN
	n.Replicas[idx] = config.Replica{Name: as, DSN: old.Origin.DSN, Protect: r.Protect}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("switchover --as %s: %w", as, err)
	}
	return &n, nil
}

// noEnvDSN refuses DSNs that the environment puts over the config file's:
// the rewritten file would name the wrong servers.
func noEnvDSN(environ []string) error {
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.TrimSpace(v) != "" && (k == config.EnvOrigin || strings.HasPrefix(k, config.EnvReplicaPrefix)) {
			return fmt.Errorf("switchover: %s replaces a DSN of the config file, which the switchover rewrites; unset it and put the DSNs in the file", k)
		}
	}
	return nil
}

// noDaemon refuses while a replay engine of the set runs: it would go on
// applying from the old origin. Its control socket answering, or its LISTEN
// session on either origin, says it runs.
func noDaemon(ctx context.Context, cfgs ...*config.Config) error {
	for _, cfg := range cfgs {
		if s := cfg.Control.Socket; s != "" {
			if err := control.Check(s); err != nil {
				return fmt.Errorf("switchover: a pgreplica daemon of set %s is running (%v): stop it first (systemctl stop pgreplica), switch over, then start it again", cfg.Name, err)
			}
		}
		conn, err := pg.ConnectOrigin(ctx, cfg, "switchover "+cfg.Name)
		if err != nil {
			continue // the old origin is checked where it is needed; R is checked as a replica
		}
		var pid *int
		err = conn.QueryRow(ctx, `SELECT min(pid) FROM pg_stat_activity
		                           WHERE datname = current_database() AND application_name = $1`, "pgreplica listen "+cfg.Name).Scan(&pid)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("switchover: origin %s: look for a running daemon: %w", config.Describe(cfg.Origin.DSN), err)
		}
		if pid != nil {
			return fmt.Errorf("switchover: a pgreplica daemon of set %s is running (its session pid %d on %s): stop it first (systemctl stop pgreplica), switch over, then start it again", cfg.Name, *pid, config.Describe(cfg.Origin.DSN))
		}
	}
	return nil
}

// checkReplicas refuses replicas that cannot be read, lag more than
// MaxLag, have tables being copied or held, or differ from the origin.
func (p *Plan) checkReplicas(ctx context.Context) error {
	rep, err := replay.QueryStatus(ctx, p.old)
	if err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	for _, r := range rep.Replicas {
		switch {
		case !r.Reachable || r.PendingUnknown:
			return fmt.Errorf("switchover: replica %s cannot be read (%s): every replica must follow the new origin", r.Name, r.Error)
		case r.Error != "":
			return fmt.Errorf("switchover: replica %s: %s: fix it first (pgreplica why --replica %s)", r.Name, r.Error, r.Name)
		case r.Lag > p.opt.MaxLag:
			return fmt.Errorf("switchover: replica %s lags %s (%d events pending), more than --max-lag %s: let it catch up first (pgreplica replicate --once)", r.Name, r.Lag.Round(time.Second), r.Pending, p.opt.MaxLag)
		}
		for t, s := range r.TableStates {
			if s != "replicating" {
				return fmt.Errorf("switchover: replica %s: table %s is %s: finish its copy (pgreplica sync, pgreplica retry --table) first", r.Name, t, s)
			}
		}
	}
	res, err := verify.Run(ctx, p.old, verify.Options{MaxKeys: 10})
	if err != nil {
		return fmt.Errorf("switchover: verify: %w", err)
	}
	for _, r := range res.Replicas {
		if r.Equal {
			continue
		}
		var diff []string
		for _, t := range r.Tables {
			if !t.Equal {
				diff = append(diff, fmt.Sprintf("%s (%d missing, %d extra, %d different)", t.Table, t.MissingCount, t.ExtraCount, t.DifferentCount))
			}
		}
		return fmt.Errorf("switchover: replica %s differs from the origin: %s; make it equal first (pgreplica verify --replica %s --repair)", r.Name, strings.Join(diff, ", "), r.Name)
	}
	origin, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	if p.tables, err = capturedTables(ctx, origin); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	return nil
}

func (p *Plan) describe() []string {
	r, _ := p.old.Replica(p.opt.To)
	var others []string
	for _, x := range p.old.Connected() {
		others = append(others, x.Name)
	}
	var follow []string
	for _, x := range p.new.Connected() {
		if x.Name == p.opt.As {
			follow = append(follow, "the old origin (as replica "+x.Name+")")
		} else {
			follow = append(follow, x.Name)
		}
	}
	return []string{
		fmt.Sprintf("switchover of set %s: origin %s → replica %s (%s)", p.old.Name, config.Describe(p.old.Origin.DSN), r.Name, config.Describe(r.DSN)),
		fmt.Sprintf("  1 fence      refuse writes to the %d replicated tables on the origin, naming the switchover", len(p.tables)),
		fmt.Sprintf("  2 catchup    wait until %s applied everything (at most %s)", strings.Join(others, ", "), p.opt.Timeout),
		fmt.Sprintf("  3 sequences  set %s's sequences to the origin's values, never below max() of the columns that use them", r.Name),
		fmt.Sprintf("  4 promote    install capture on %s; %s start from its snapshot", r.Name, strings.Join(follow, ", ")),
		fmt.Sprintf("  5 config     rewrite %s (the old one kept as %s.bak-TIME)", p.st.Config, p.st.Config),
		fmt.Sprintf("  6 unfence    lift the fences: %s takes the writes", r.Name),
		"  7 verify     compare every replica with the new origin",
		"the daemon must stay stopped until the switchover is done; then start it with the rewritten config",
	}
}

// Run makes the switchover: the backup and the state file first, then
// every step. It returns verify's result on the new set.
func (p *Plan) Run(ctx context.Context) (verify.Result, error) {
	now := p.opt.now().UTC()
	data, err := os.ReadFile(p.st.Config)
	if err != nil {
		return verify.Result{}, fmt.Errorf("switchover: %w", err)
	}
	p.st.Backup = p.st.Config + ".bak-" + now.Format("20060102T150405Z")
	p.st.Started = now
	if err := writeAtomic(p.st.Backup, data, 0o600); err != nil {
		return verify.Result{}, fmt.Errorf("switchover: back up the config: %w", err)
	}
	if err := p.st.save(); err != nil {
		return verify.Result{}, err
	}
	p.opt.report("config backed up as " + p.st.Backup)
	return p.run(ctx)
}

// load rebuilds a plan from its state file.
func load(ctx context.Context, path string, opt Options) (*Plan, error) {
	st, err := ReadState(path)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("no switchover is under way for %s (no %s)", path, StatePath(path))
	}
	old, err := config.Load(st.Backup)
	if err != nil {
		return nil, fmt.Errorf("switchover: the config backup: %w", err)
	}
	newCfg, err := swapped(old, st.To, st.As)
	if err != nil {
		return nil, err
	}
	opt.To, opt.As = st.To, st.As
	if opt.MaxLag, err = time.ParseDuration(st.MaxLag); err != nil {
		opt.MaxLag = DefaultMaxLag
	}
	if opt.Timeout <= 0 {
		if opt.Timeout, err = time.ParseDuration(st.Timeout); err != nil {
			opt.Timeout = DefaultTimeout
		}
	}
	if err := noDaemon(ctx, old, newCfg); err != nil {
		return nil, err
	}
	return &Plan{st: st, old: old, new: newCfg, opt: opt}, nil
}

// Resume finishes the switchover under way for the config at path from
// the step after the last one done.
func Resume(ctx context.Context, path string, opt Options) (verify.Result, error) {
	if err := noEnvDSN(opt.Environ); err != nil {
		return verify.Result{}, err
	}
	p, err := load(ctx, path, opt)
	if err != nil {
		return verify.Result{}, err
	}
	p.opt.report(fmt.Sprintf("resuming the switchover of set %s to %s after step %s", p.st.Set, p.st.To, p.st.Done))
	return p.run(ctx)
}

func (p *Plan) run(ctx context.Context) (verify.Result, error) {
	var res verify.Result
	steps := map[Step]func(context.Context) error{
		Fence:     p.fence,
		CatchUp:   p.catchUp,
		Sequences: p.sequences,
		Promote:   p.promote,
		Config:    p.rewriteConfig,
		Unfence:   p.unfence,
		Verify: func(ctx context.Context) error {
			var err error
			res, err = p.verify(ctx)
			return err
		},
	}
	for _, s := range Steps() {
		if s <= p.st.Done {
			continue
		}
		start := time.Now()
		p.opt.report(fmt.Sprintf("step %d/%d %s", int(s), len(Steps()), s))
		if err := steps[s](ctx); err != nil {
			return res, fmt.Errorf("switchover step %s: %w", s, p.hint(s, err))
		}
		p.st.Done = s
		if s == Verify {
			if err := p.st.remove(); err != nil {
				return res, err
			}
		} else if err := p.st.save(); err != nil {
			return res, err
		}
		p.opt.report(fmt.Sprintf("step %d/%d %s done in %s", int(s), len(Steps()), s, time.Since(start).Round(time.Millisecond)))
		if p.opt.AfterStep != nil {
			p.opt.AfterStep(s)
		}
	}
	return res, nil
}

// hint adds what the operator can do after a failed step.
func (p *Plan) hint(s Step, err error) error {
	if s >= Unfence {
		return fmt.Errorf("%w; then pgreplica switchover --resume", err)
	}
	return fmt.Errorf("%w; then pgreplica switchover --resume, or --abort to go back to the old origin", err)
}

// fence puts the switchover fence on every captured table of the origin,
// each in a short transaction of its own (busy tables are retried), and
// records the origin's snapshot once all are up.
func (p *Plan) fence(ctx context.Context) error {
	// What is pending now is applied before the fence goes up, so that
	// the writes wait only for what comes in meanwhile.
	if _, err := replay.New(p.old, slog.New(slog.DiscardHandler), replay.Options{}).Once(ctx); err != nil {
		return fmt.Errorf("catch up before the fence: %w", err)
	}
	conn, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := capturedTables(ctx, conn)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	r, _ := p.old.Replica(p.st.To)
	what := fmt.Sprintf("set %s to %s (%s)", p.old.Name, r.Name, config.Describe(r.DSN))
	if err := putFence(ctx, conn, tables, what); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	// The new origin too, until it captures: a write there now would not
	// be captured (pgreplica's apply session passes).
	rconn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	if err := putFence(ctx, rconn, tables, what); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&p.st.FenceAt); err != nil {
		return fmt.Errorf("origin: take snapshot: %w", err)
	}
	p.opt.report(fmt.Sprintf("fenced %d tables on the origin and on %s: writes there now fail with \"pgreplica: TABLE is fenced for the switchover of %s\"", len(tables), r.Name, what))
	return nil
}

// shortTx runs f in a short transaction of its own on conn, with a 2 s
// lock timeout, again (up to 10 times) while the lock is busy or a
// deadlock chose it: DDL on a busy application table waits for its lock
// without holding up the application for long.
func shortTx(ctx context.Context, conn *pgx.Conn, f func(pgx.Tx) error) error {
	return pg.Retry(ctx, 10, 200*time.Millisecond, pg.IsLockBusy, func() error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
			return err
		}
		if err := f(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// putFence installs the fence function and puts the switchover fence on
// each of tables, in a short transaction per table (busy tables are
// retried).
func putFence(ctx context.Context, conn *pgx.Conn, tables []pg.Table, what string) error {
	if _, err := conn.Exec(ctx, pgsql.Switchover); err != nil {
		return fmt.Errorf("install the fence function: %w", err)
	}
	for _, t := range tables {
		err := shortTx(ctx, conn, func(tx pgx.Tx) error {
			var sql *string
			if err := tx.QueryRow(ctx, `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = 'pgreplica_switchover')
			    THEN format('CREATE TRIGGER pgreplica_switchover BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgreplica.switchover_fence(%L)', $1::text, $2::text) END`,
				t.Ident(), what).Scan(&sql); err != nil {
				return err
			}
			if sql == nil {
				return nil
			}
			_, err := tx.Exec(ctx, *sql)
			return err
		})
		if err != nil {
			return fmt.Errorf("fence %s: %w (creating it needs TRIGGER on the table)", t, err)
		}
	}
	return nil
}

// capturedTables lists the tables with a capture trigger.
func capturedTables(ctx context.Context, q capture.Querier) ([]pg.Table, error) {
	return tablesWithTrigger(ctx, q, "pgreplica_capture")
}

func tablesWithTrigger(ctx context.Context, q capture.Querier, name string) ([]pg.Table, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname FROM pg_trigger t
	    JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	   WHERE t.tgname = $1 ORDER BY 1, 2`, name)
	if err != nil {
		return nil, fmt.Errorf("list tables with trigger %s: %w", name, err)
	}
	tabs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pg.Table, error) {
		var t pg.Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("list tables with trigger %s: %w", name, err)
	}
	return tabs, nil
}

// catchUp applies everything the fenced origin committed to every replica
// and checks that nothing is pending anywhere, within the timeout, saying
// every second how much is left.
func (p *Plan) catchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opt.Timeout)
	defer cancel()
	eng := replay.New(p.old, slog.New(slog.DiscardHandler), replay.Options{})
	for {
		done := make(chan error, 1)
		go func() { _, err := eng.Once(ctx); done <- err }()
		tick := time.NewTicker(time.Second)
	wait:
		for {
			select {
			case err := <-done:
				tick.Stop()
				if err != nil {
					return p.catchUpError(ctx, err)
				}
				break wait
			case <-tick.C:
				if line, _, err := p.pending(ctx); err == nil {
					p.opt.report("catchup: " + line)
				}
			}
		}
		line, left, err := p.pending(ctx)
		if err != nil {
			return p.catchUpError(ctx, err)
		}
		if left == 0 {
			p.opt.report("catchup: every replica applied everything: " + line)
			return nil
		}
		// Not all applied (another engine holds a replica?): look again
		// shortly, until the timeout.
		select {
		case <-ctx.Done():
			return p.catchUpError(ctx, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *Plan) catchUpError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		line, _, _ := p.pending(context.WithoutCancel(ctx))
		return fmt.Errorf("the replicas did not apply everything within %s (%s): the origin stays fenced", p.opt.Timeout, line)
	}
	return err
}

// pending says how many events each replica has left to apply.
func (p *Plan) pending(ctx context.Context) (string, int64, error) {
	rep, err := replay.QueryStatus(ctx, p.old)
	if err != nil {
		return "", 0, err
	}
	var parts []string
	var left int64
	for _, r := range rep.Replicas {
		if r.PendingUnknown {
			return "", 0, fmt.Errorf("replica %s: %s", r.Name, r.Error)
		}
		parts = append(parts, fmt.Sprintf("%s %d pending", r.Name, r.Pending))
		left += r.Pending
	}
	return strings.Join(parts, ", "), left, nil
}

// sequences sets each sequence of the captured tables on the new origin to
// the old origin's value, and never below max() of a column using it there.
func (p *Plan) sequences(ctx context.Context) error {
	origin, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	r, _ := p.old.Replica(p.st.To)
	conn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := origin.Query(ctx, `SELECT pgreplica.table_name(s.seq), pg_sequence_last_value(s.seq)
	                                  FROM pgreplica.captured_sequences() s ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("origin: read sequences: %w", err)
	}
	type seq struct {
		name string
		last *int64
	}
	seqs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (seq, error) {
		var s seq
		return s, row.Scan(&s.name, &s.last)
	})
	if err != nil {
		return fmt.Errorf("origin: read sequences: %w", err)
	}
	for _, s := range seqs {
		line, err := setSequence(ctx, conn, s.name, s.last)
		if err != nil {
			return fmt.Errorf("replica %s: sequence %s: %w", r.Name, s.name, err)
		}
		p.opt.report(fmt.Sprintf("sequence %s on %s: %s", s.name, r.Name, line))
	}
	if len(seqs) == 0 {
		p.opt.report("no sequence is used by the replicated tables")
	}
	return nil
}

// setSequence moves sequence name on conn to the greatest of the origin's
// value, max() of every column that uses it and its own value.
func setSequence(ctx context.Context, conn *pgx.Conn, name string, origin *int64) (string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		return "", errors.New("missing on the new origin: create it there (pgreplica sync --schema does)")
	}
	rows, err := conn.Query(ctx, `
SELECT format('SELECT max(%I)::bigint FROM %I.%I', a.attname, n.nspname, c.relname), format('%s.%s.%s', n.nspname, c.relname, a.attname)
  FROM (SELECT d.refobjid AS rel, d.refobjsubid AS att FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.objid = to_regclass($1) AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
        UNION
        SELECT ad.adrelid, ad.adnum FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass($1)) u
  JOIN pg_class c ON c.oid = u.rel JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = u.rel AND a.attnum = u.att
 ORDER BY 2`, name)
	if err != nil {
		return "", fmt.Errorf("columns that use it: %w", err)
	}
	type col struct{ query, name string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.query, &c.name)
	})
	if err != nil {
		return "", fmt.Errorf("columns that use it: %w", err)
	}
	target := origin
	why := []string{"origin " + str(origin)}
	for _, c := range cols {
		var m *int64
		if err := conn.QueryRow(ctx, c.query).Scan(&m); err != nil {
			return "", fmt.Errorf("max(%s): %w", c.name, err)
		}
		why = append(why, fmt.Sprintf("max(%s) %s", c.name, str(m)))
		target = greatest(target, m)
	}
	var own *int64
	if err := conn.QueryRow(ctx, "SELECT pg_sequence_last_value(to_regclass($1))", name).Scan(&own); err != nil {
		return "", err
	}
	why = append(why, "its own "+str(own))
	if target == nil || (own != nil && *own >= *target) {
		return "left as it is (" + strings.Join(why, ", ") + ")", nil
	}
	if _, err := conn.Exec(ctx, "SELECT setval(to_regclass($1), $2, true)", name, *target); err != nil {
		return "", fmt.Errorf("setval: %w", err)
	}
	return fmt.Sprintf("set to %d (%s)", *target, strings.Join(why, ", ")), nil
}

func greatest(a, b *int64) *int64 {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

func str(v *int64) string {
	if v == nil {
		return "unused"
	}
	return fmt.Sprint(*v)
}

// promote makes the new origin: the replicas' positions saved for
// --abort, capture removed from the old origin, capture installed on the
// new one, and every position (the old origin's included) set to one
// snapshot of the new origin, taken while nothing writes to its tables.
func (p *Plan) promote(ctx context.Context) error {
	r, _ := p.old.Replica(p.st.To)
	rconn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	oconn, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer oconn.Close(context.WithoutCancel(ctx))
	if p.st.Saved == nil {
		saved := map[string]SavedPosition{}
		for _, x := range p.old.Connected() {
			c, err := pg.ConnectReplica(ctx, x, "switchover "+p.old.Name)
			if err != nil {
				return err
			}
			sp, err := readPosition(ctx, c, p.old.Name)
			c.Close(context.WithoutCancel(ctx))
			if err != nil {
				return fmt.Errorf("replica %s: %w", x.Name, err)
			}
			saved[x.Name] = sp
		}
		if p.st.OldOrigin, err = readPosition(ctx, oconn, p.old.Name); err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		p.st.Saved = saved
		if err := p.st.save(); err != nil {
			return err
		}
	}
	p.opt.at("promote.saved")
	// The old origin captures no more.
	tables, err := capturedTables(ctx, oconn)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if err := uncapture(ctx, oconn, tables); err != nil {
		return fmt.Errorf("old origin: %w", err)
	}
	p.opt.at("promote.uncaptured")
	// A fresh log on the new origin (one left from an earlier time as
	// origin holds only applied events), unless capture is there already
	// (a promote that is resumed).
	if err := freshLog(ctx, rconn); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	err = capture.InstallWith(ctx, p.new, capture.Options{Recapture: true}, func(l string) { p.opt.report("install: " + l) })
	if err != nil {
		return fmt.Errorf("install on the new set: %w", err)
	}
	p.opt.at("promote.installed")
	if p.st.Snapshot == "" {
		if err := rconn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&p.st.Snapshot); err != nil {
			return fmt.Errorf("replica %s: take snapshot: %w", r.Name, err)
		}
		if err := p.st.save(); err != nil {
			return err
		}
	}
	snap := p.st.Snapshot
	if err := register(ctx, rconn, p.new, snap); err != nil {
		return err
	}
	p.opt.at("promote.registered")
	if err := setPositions(ctx, p.new, snap); err != nil {
		return err
	}
	p.opt.report(fmt.Sprintf("%s is the origin of set %s; every replica starts from its snapshot %s", r.Name, p.new.Name, snap))
	return nil
}

func readPosition(ctx context.Context, c *pgx.Conn, set string) (SavedPosition, error) {
	var sp SavedPosition
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('pgreplica.position') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return sp, err
	}
	err := c.QueryRow(ctx, `SELECT snapshot, target, last_id, applied_events, applied_at::text FROM pgreplica.position WHERE set_name = $1`, set).
		Scan(&sp.Snapshot, &sp.Target, &sp.LastID, &sp.AppliedEvents, &sp.AppliedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return sp, nil
	}
	if err != nil {
		return sp, fmt.Errorf("read position: %w", err)
	}
	sp.Exists = true
	return sp, nil
}

// restorePosition puts a saved position row back.
func restorePosition(ctx context.Context, c *pgx.Conn, set string, sp SavedPosition) error {
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('pgreplica.position') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return err
	}
	if !sp.Exists {
		_, err := c.Exec(ctx, "DELETE FROM pgreplica.position WHERE set_name = $1", set)
		return err
	}
	_, err := c.Exec(ctx, `INSERT INTO pgreplica.position (set_name, snapshot, target, last_id, applied_events, applied_at)
	                       VALUES ($1, $2, $3, $4, $5, $6::timestamptz)
	                       ON CONFLICT (set_name) DO UPDATE SET snapshot = EXCLUDED.snapshot, target = EXCLUDED.target,
	                         last_id = EXCLUDED.last_id, applied_events = EXCLUDED.applied_events, applied_at = EXCLUDED.applied_at`,
		set, sp.Snapshot, sp.Target, sp.LastID, sp.AppliedEvents, sp.AppliedAt)
	return err
}

// uncapture removes the capture triggers of tables (and forgets that they
// were removed: capturing them again needs no new copy).
func uncapture(ctx context.Context, c *pgx.Conn, tables []pg.Table) error {
	for _, t := range tables {
		err := shortTx(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pgreplica.remove_table(to_regclass($1))", t.Ident()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DELETE FROM pgreplica.removed WHERE relid = to_regclass($1)", t.Ident())
			return err
		})
		if err != nil {
			return fmt.Errorf("remove capture from %s: %w", t, err)
		}
	}
	return nil
}

// freshLog empties a former origin's log before capture is installed
// there again; a database with capture triggers is left alone.
func freshLog(ctx context.Context, c *pgx.Conn) error {
	var hasLog, captures bool
	if err := c.QueryRow(ctx, `SELECT to_regclass('pgreplica.log_2') IS NOT NULL AND to_regclass('pgreplica.sequence_sample') IS NOT NULL,
	                                  EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgreplica_capture')`).Scan(&hasLog, &captures); err != nil {
		return err
	}
	if !hasLog || captures {
		return nil
	}
	_, err := c.Exec(ctx, "TRUNCATE pgreplica.log_0, pgreplica.log_1, pgreplica.log_2; DELETE FROM pgreplica.sequence_sample")
	return err
}

// rewriteConfig writes the config file of the new set; the backup holds
// the old one.
func (p *Plan) rewriteConfig(ctx context.Context) error {
	data, err := os.ReadFile(p.st.Backup)
	if err != nil {
		return fmt.Errorf("read the config backup: %w", err)
	}
	out, err := swappedConfig(data, p.st.To, p.st.As)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", p.st.Config, err)
	}
	if err := writeConfig(p.st.Config, out); err != nil {
		return fmt.Errorf("rewrite %s: %w", p.st.Config, err)
	}
	p.opt.report(fmt.Sprintf("%s now names %s as the origin (the old config is %s)", p.st.Config, config.Describe(p.new.Origin.DSN), p.st.Backup))
	return nil
}

// unfence lifts the new origin's replica fence, then the switchover fence
// of the old origin (which keeps its replica fence when its entry has
// protect).
func (p *Plan) unfence(ctx context.Context) error {
	if !p.st.Unfencing {
		p.st.Unfencing = true
		if err := p.st.save(); err != nil {
			return err
		}
	}
	r, _ := p.old.Replica(p.st.To)
	rconn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	for _, name := range []string{"pgreplica_fence", "pgreplica_switchover"} {
		if err := dropTriggers(ctx, rconn, name); err != nil {
			return fmt.Errorf("new origin: %w", err)
		}
	}
	oconn, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer oconn.Close(context.WithoutCancel(ctx))
	if err := dropTriggers(ctx, oconn, "pgreplica_switchover"); err != nil {
		return fmt.Errorf("old origin: %w", err)
	}
	p.opt.report(fmt.Sprintf("fences lifted: %s takes the writes", r.Name))
	return nil
}

func dropTriggers(ctx context.Context, c *pgx.Conn, name string) error {
	tables, err := tablesWithTrigger(ctx, c, name)
	if err != nil {
		return err
	}
	for _, t := range tables {
		err := shortTx(ctx, c, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "DROP TRIGGER IF EXISTS "+pgx.Identifier{name}.Sanitize()+" ON "+t.Ident())
			return err
		})
		if err != nil {
			return fmt.Errorf("drop %s on %s: %w", name, t, err)
		}
	}
	return nil
}

func (p *Plan) verify(ctx context.Context) (verify.Result, error) {
	res, err := verify.Run(ctx, p.new, verify.Options{MaxKeys: 10})
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	for _, r := range res.Replicas {
		word := "equal"
		if !r.Equal {
			word = "DIFFERENT"
		}
		p.opt.report(fmt.Sprintf("verify: replica %s: %s (%d tables)", r.Name, word, len(r.Tables)))
	}
	return res, nil
}

// Abort undoes the switchover under way for the config at path, as long
// as its fences were not lifted: the config file, the positions, the
// capture of the old origin and the fences are as they were before.
func Abort(ctx context.Context, path string, opt Options) error {
	p, err := load(ctx, path, opt)
	if err != nil {
		return err
	}
	st := p.st
	if st.Unfencing || st.Done >= Unfence {
		return fmt.Errorf("the switchover of set %s to %s lifted its fences already: the new origin may have taken writes; finish it with pgreplica switchover --resume (and switch back later with pgreplica switchover --to %s)", st.Set, st.To, st.As)
	}
	p.opt.report(fmt.Sprintf("aborting the switchover of set %s to %s (done: %s)", st.Set, st.To, st.Done))
	backup, err := os.ReadFile(st.Backup)
	if err != nil {
		return fmt.Errorf("abort: read the config backup: %w", err)
	}
	if cur, err := os.ReadFile(st.Config); err != nil || !bytes.Equal(cur, backup) {
		if err := writeAtomic(st.Config, backup, 0o600); err != nil {
			return fmt.Errorf("abort: restore %s: %w", st.Config, err)
		}
		p.opt.report("restored " + st.Config + " from " + st.Backup)
	}
	oconn, err := pg.ConnectOrigin(ctx, p.old, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer oconn.Close(context.WithoutCancel(ctx))
	if st.Saved != nil {
		r, _ := p.old.Replica(st.To)
		rconn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
		if err != nil {
			return err
		}
		defer rconn.Close(context.WithoutCancel(ctx))
		tables, err := capturedTables(ctx, rconn)
		if err != nil {
			return fmt.Errorf("replica %s: %w", r.Name, err)
		}
		if err := uncapture(ctx, rconn, tables); err != nil {
			return fmt.Errorf("replica %s: %w", r.Name, err)
		}
		for _, x := range p.old.Connected() {
			sp, ok := st.Saved[x.Name]
			if !ok {
				continue
			}
			c := rconn
			if x.Name != r.Name {
				if c, err = pg.ConnectReplica(ctx, x, "switchover "+p.old.Name); err != nil {
					return err
				}
			}
			err := restorePosition(ctx, c, p.old.Name, sp)
			if c != rconn {
				c.Close(context.WithoutCancel(ctx))
			}
			if err != nil {
				return fmt.Errorf("replica %s: restore position: %w", x.Name, err)
			}
		}
		if err := restorePosition(ctx, oconn, p.old.Name, st.OldOrigin); err != nil {
			return fmt.Errorf("origin: restore position: %w", err)
		}
		if err := dropTriggers(ctx, oconn, "pgreplica_fence"); err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		if err := capture.Install(ctx, p.old, func(l string) { p.opt.report("install: " + l) }); err != nil {
			return fmt.Errorf("abort: install on the old set: %w", err)
		}
	}
	if err := dropTriggers(ctx, oconn, "pgreplica_switchover"); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	r, _ := p.old.Replica(st.To)
	rconn, err := pg.ConnectReplica(ctx, r, "switchover "+p.old.Name)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	if err := dropTriggers(ctx, rconn, "pgreplica_switchover"); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if err := st.remove(); err != nil {
		return err
	}
	p.opt.report(fmt.Sprintf("aborted: %s is the origin of set %s again and takes writes", config.Describe(p.old.Origin.DSN), p.old.Name))
	return nil
}
