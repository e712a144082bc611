package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

// The tables every scenario writes: the four of pgbench's TPC-B, the table
// of the insert backlog and the lag probe.
var benchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers",
	"pgbench_history", "bench_insert", "lagprobe"}

// Databases: one origin database, and on the replica cluster one database
// per replicator, each starting as a copy of the origin's data.
const (
	originDB   = "bench"
	baseDB     = "rep_base"
	setName    = "bench"
	nativePub  = "bench_pub"
	nativeSub  = "bench_sub"
	slonyName  = "bench"
	slonyTrig  = "_" + slonyName + "_logtrigger"
	slonyTrunc = "_" + slonyName + "_truncatetrigger"
)

func replicaDB(replicator string) string { return "rep_" + replicator }

// serverSettings make native logical replication possible and keep the
// rest at PostgreSQL's defaults. pgtest sets fsync = off and
// full_page_writes = off (kept: the bench compares CPU costs, not disks) and
// synchronous_commit = off, which is put back to on here: with it off, WAL
// reaches the disk only every wal_writer_delay (200 ms) and a walsender
// sends only flushed WAL, which would add up to 200 ms to native logical
// replication's lag.
var serverSettings = []string{
	"synchronous_commit = on",
	"wal_level = logical",
	"max_wal_senders = 10",
	"max_replication_slots = 10",
	"max_worker_processes = 16",
	"max_logical_replication_workers = 4",
	"shared_buffers = 128MB",
	"max_wal_size = 4GB",
	"wal_sender_timeout = 0",
	"wal_receiver_timeout = 0",
	// The logical replication launcher starts at most one worker per
	// wal_retrieve_retry_interval (5 s): a subscription enabled within 5 s
	// of the last start would wait for it (seen in --quick).
	"wal_retrieve_retry_interval = 100ms",
}

// env is the running bench: two clusters, connections and tools.
type env struct {
	opt        Options
	work       string
	origin     *pgtest.Cluster
	replica    *pgtest.Cluster
	bin        string // PostgreSQL client binaries (pgbench)
	pgreplica  string // the pgreplica binary
	config     string // pgreplica's config file
	og         *pgx.Conn
	reps       map[string]*pgx.Conn // replicator -> its replica database
	slony      *slony
	pgVersion  string
	mode       string
	durability string // "off" or "on" (setDurability)

	busy        float64       // of the sample being measured
	waited      time.Duration // for quiet before it
	daemon      *daemon       // the pgreplica run now running
	samples     []Sample
	totalWaited time.Duration
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.opt.Log, "bench: "+format+"\n", args...)
}

func (e *env) close() {
	ctx := context.Background()
	if e.slony != nil {
		e.slony.stop()
	}
	e.stopDaemon()
	if e.og != nil {
		e.og.Close(ctx)
	}
	for _, c := range e.reps {
		c.Close(ctx)
	}
	if e.origin != nil {
		e.origin.Stop()
	}
	if e.replica != nil {
		e.replica.Stop()
	}
	if e.work != "" && !e.opt.Keep {
		os.RemoveAll(e.work)
	}
}

// setup starts the clusters and makes the origin database and one replica
// database per replicator with the same schema and data.
func setup(ctx context.Context, opt Options) (_ *env, err error) {
	e := &env{opt: opt, reps: map[string]*pgx.Conn{}, mode: "?", durability: "off"}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.work, err = os.MkdirTemp("", "pgreplica-bench-"); err != nil {
		return nil, err
	}
	e.pgreplica = opt.Pgreplica
	if e.pgreplica == "" {
		e.pgreplica = filepath.Join(e.work, "pgreplica")
		e.logf("building pgreplica")
		if err := buildPgreplica(ctx, e.pgreplica); err != nil {
			return nil, err
		}
	}
	e.logf("starting the origin and replica clusters")
	if e.origin, err = pgtest.Start(ctx, "bench-origin", pgtest.Options{Settings: serverSettings}); err != nil {
		return nil, err
	}
	if e.replica, err = pgtest.Start(ctx, "bench-replica", pgtest.Options{Settings: serverSettings}); err != nil {
		return nil, err
	}
	e.bin = e.origin.BinDir()
	if _, err := os.Stat(filepath.Join(e.bin, "pgbench")); err != nil {
		if p, lerr := exec.LookPath("pgbench"); lerr == nil {
			e.bin = filepath.Dir(p)
		} else {
			return nil, errors.New("pgbench not found (Debian: apt-get install -y postgresql-contrib)")
		}
	}

	if err := e.origin.Exec(ctx, "postgres", "CREATE DATABASE "+originDB); err != nil {
		return nil, err
	}
	if err := e.replica.Exec(ctx, "postgres", "CREATE DATABASE "+baseDB); err != nil {
		return nil, err
	}
	e.logf("pgbench -i -s %d on both clusters", opt.Scale)
	for _, c := range []struct {
		cl *pgtest.Cluster
		db string
	}{{e.origin, originDB}, {e.replica, baseDB}} {
		if _, err := e.pgbench(ctx, c.cl, c.db, "-i", "-q", "-s", strconv.Itoa(opt.Scale)); err != nil {
			return nil, err
		}
		if err := c.cl.Exec(ctx, c.db, schemaSQL); err != nil {
			return nil, fmt.Errorf("schema on %s: %w", c.cl.Name, err)
		}
	}
	if err := e.replica.Exec(ctx, baseDB, replicaProbeSQL); err != nil {
		return nil, fmt.Errorf("lag probe trigger: %w", err)
	}
	replicators := []string{"pgreplica", "native"}
	if opt.WithSlony {
		replicators = append(replicators, "slony")
	}
	for _, r := range replicators {
		if err := e.replica.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", replicaDB(r), baseDB)); err != nil {
			return nil, err
		}
	}
	if e.og, err = pgx.Connect(ctx, e.origin.DSN(originDB)); err != nil {
		return nil, err
	}
	if err := e.og.QueryRow(ctx, "SHOW server_version").Scan(&e.pgVersion); err != nil {
		return nil, err
	}
	for _, r := range replicators {
		if e.reps[r], err = pgx.Connect(ctx, e.replica.DSN(replicaDB(r))); err != nil {
			return nil, err
		}
	}

	// pgreplica: capture on the six tables of public.
	e.config = filepath.Join(e.work, "pgreplica.yaml")
	cfg := fmt.Sprintf("name: %s\norigin:\n  dsn: %q\nreplicas:\n  - name: rep\n    dsn: %q\ntables:\n  include: [\"public.*\"]\n",
		setName, e.origin.DSN(originDB), e.replica.DSN(replicaDB("pgreplica")))
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	e.logf("pgreplica install")
	if out, err := e.pgreplicaCmd(ctx, "install"); err != nil {
		return nil, fmt.Errorf("pgreplica install: %w\n%s", err, out)
	}

	// Native logical replication: a publication of the same tables; each
	// measurement makes a fresh subscription (and slot) and drops it after.
	if _, err := e.og.Exec(ctx, "CREATE PUBLICATION "+nativePub+" FOR TABLE "+strings.Join(benchTables, ", ")); err != nil {
		return nil, err
	}

	if opt.WithSlony {
		e.logf("setting up a Slony-I cluster (origin node 1, replica node 2)")
		if e.slony, err = setupSlony(ctx, e); err != nil {
			return nil, fmt.Errorf("slony: %w", err)
		}
	}
	if err := e.setMode(ctx, "none"); err != nil {
		return nil, err
	}
	return e, nil
}

// schemaSQL runs on the origin and every replica after pgbench -i.
const schemaSQL = `
ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY;
CREATE TABLE bench_insert (id bigserial PRIMARY KEY, v integer NOT NULL, pad text NOT NULL);
CREATE TABLE lagprobe (id bigserial PRIMARY KEY, t0 timestamptz NOT NULL DEFAULT clock_timestamp());
`

// replicaProbeSQL records, on a replica, how long each probe row took to
// arrive: the trigger fires whoever applies the row (ENABLE ALWAYS: the
// appliers run with session_replication_role = replica).
const replicaProbeSQL = `
CREATE TABLE lagresult (id bigint PRIMARY KEY, ms double precision NOT NULL);
CREATE FUNCTION lagprobe_arrived() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.lagresult (id, ms)
    VALUES (NEW.id, extract(epoch FROM clock_timestamp() - NEW.t0) * 1000)
    ON CONFLICT (id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER lagprobe_arrived AFTER INSERT ON lagprobe FOR EACH ROW EXECUTE FUNCTION lagprobe_arrived();
ALTER TABLE lagprobe ENABLE ALWAYS TRIGGER lagprobe_arrived;
`

// buildPgreplica builds ./cmd/pgreplica of this module into out.
func buildPgreplica(ctx context.Context, out string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/pgreplica")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pgreplica: %w\n%s", err, b)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench inside the pgreplica module (or pass --pgreplica BINARY)")
	}
	return filepath.Dir(mod), nil
}

// pgreplicaCmd runs the pgreplica CLI with the bench config.
func (e *env) pgreplicaCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.pgreplica, append([]string{"-c", e.config}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// procResult is what a finished subprocess used.
type procResult struct {
	Wall    time.Duration
	MaxRSS  int64   // KB
	CPU     float64 // user + system seconds
	Output  string
	Started time.Time
}

// timedPgreplica runs pgreplica and reports its wall time, peak RSS and CPU.
func (e *env) timedPgreplica(ctx context.Context, args ...string) (procResult, error) {
	cmd := exec.CommandContext(ctx, e.pgreplica, append([]string{"-c", e.config}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err := cmd.Run()
	r := procResult{Wall: time.Since(start), Output: buf.String(), Started: start}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = ru.Maxrss
			r.CPU = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		}
	}
	if err != nil {
		return r, fmt.Errorf("pgreplica %s: %w\n%s", strings.Join(args, " "), err, r.Output)
	}
	return r, nil
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// daemon is a pgreplica run subprocess.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
	log  *os.File
}

func (e *env) startDaemon(ctx context.Context) (*daemon, error) {
	return e.startDaemonBin(ctx, e.pgreplica)
}

// startDaemonBin starts `run` of the pgreplica binary bin.
func (e *env) startDaemonBin(ctx context.Context, bin string) (*daemon, error) {
	f, err := os.OpenFile(filepath.Join(e.work, "pgreplica-run.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", e.config, "run", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1), log: f}
	e.daemon = d
	go func() { d.done <- cmd.Wait() }()
	select {
	case err := <-d.done:
		f.Close()
		e.daemon = nil
		return nil, fmt.Errorf("pgreplica run exited at once: %v (see %s)", err, f.Name())
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	return d, nil
}

// stopDaemon stops the running pgreplica run.
func (e *env) stopDaemon() error {
	if e.daemon == nil {
		return nil
	}
	_, err := e.daemon.stop()
	e.daemon = nil
	return err
}

// stop sends SIGTERM and waits; the result carries peak RSS and CPU.
func (d *daemon) stop() (procResult, error) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.done:
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		err = <-d.done
		if err == nil {
			err = errors.New("pgreplica run did not stop within 60s of SIGTERM")
		}
	}
	d.log.Close()
	var r procResult
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss
		r.CPU = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	if err != nil {
		return r, fmt.Errorf("pgreplica run: %w (log: %s)", err, d.log.Name())
	}
	return r, nil
}

// pgbenchResult is one pgbench run.
type pgbenchResult struct {
	CPU    float64 // pgbench's own user + system seconds
	TPS    float64
	Txns   int64
	Output string
}

var (
	tpsRe  = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)`)
	txnsRe = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
)

// pgbench runs pgbench against database db of cluster c.
func (e *env) pgbench(ctx context.Context, c *pgtest.Cluster, db string, args ...string) (pgbenchResult, error) {
	full := append([]string{"-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", c.User}, args...)
	full = append(full, db)
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "pgbench"), full...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=", "PGAPPNAME=pgbench")
	b, err := cmd.CombinedOutput()
	r := pgbenchResult{Output: string(b)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.CPU = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		}
	}
	if err != nil {
		return r, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, tail(r.Output, 20))
	}
	if m := tpsRe.FindStringSubmatch(r.Output); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := txnsRe.FindStringSubmatch(r.Output); m != nil {
		r.Txns, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setMode enables on the origin the capture triggers of one replicator
// (pgreplica, slony) and disables every other trigger of the bench tables;
// "none" and "native" leave none enabled.
func (e *env) setMode(ctx context.Context, mode string) error {
	if e.mode == mode {
		return nil
	}
	var enable []string
	switch mode {
	case "pgreplica":
		enable = []string{"pgreplica_capture", "pgreplica_truncate"}
	case "slony":
		enable = []string{slonyTrig, slonyTrunc}
	}
	var sql strings.Builder
	for _, t := range benchTables {
		fmt.Fprintf(&sql, "ALTER TABLE %s DISABLE TRIGGER USER;\n", t)
		for _, trg := range enable {
			fmt.Fprintf(&sql, "ALTER TABLE %s ENABLE TRIGGER %s;\n", t, pgx.Identifier{trg}.Sanitize())
		}
	}
	if _, err := e.og.Exec(ctx, sql.String()); err != nil {
		return fmt.Errorf("mode %s: %w", mode, err)
	}
	e.mode = mode
	return nil
}

// reset brings the origin to the same state before each timed run: no
// pending pgreplica events, an empty history and insert table, fresh
// visibility maps and statistics, nothing dirty in shared buffers. It runs
// with every capture trigger disabled, so nothing of it is replicated.
func (e *env) reset(ctx context.Context) error {
	if err := e.setMode(ctx, "none"); err != nil {
		return err
	}
	if err := execAll(ctx, e.og,
		"TRUNCATE pgreplica.log_0, pgreplica.log_1, pgreplica.log_2",
		"TRUNCATE pgbench_history, bench_insert",
		"VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bench_insert, lagprobe",
		"CHECKPOINT"); err != nil {
		return fmt.Errorf("reset origin: %w", err)
	}
	for r, c := range e.reps {
		if err := execAll(ctx, c,
			"SET session_replication_role = replica",
			"TRUNCATE pgbench_history, bench_insert",
			"RESET session_replication_role",
			"VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bench_insert"); err != nil {
			return fmt.Errorf("reset replica %s: %w", r, err)
		}
	}
	_, err := e.reps[firstKey(e.reps)].Exec(ctx, "CHECKPOINT")
	return err
}

// execAll runs each statement on its own (VACUUM cannot share a
// transaction).
func execAll(ctx context.Context, c *pgx.Conn, stmts ...string) error {
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func firstKey(m map[string]*pgx.Conn) string {
	for k := range m {
		return k
	}
	return ""
}

// marker inserts a probe row on the origin (in the current mode) and
// returns its id: once a replica has it, it has everything committed
// before it (every replicator here applies in commit order).
func (e *env) marker(ctx context.Context) (int64, error) {
	var id int64
	err := e.og.QueryRow(ctx, "INSERT INTO lagprobe DEFAULT VALUES RETURNING id").Scan(&id)
	return id, err
}

// waitFor polls replica database of replicator r until probe row id is
// there; it returns when it was seen.
func (e *env) waitFor(ctx context.Context, r string, id int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		if err := e.reps[r].QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM lagprobe WHERE id = $1)", id).Scan(&ok); err != nil {
			return time.Time{}, err
		}
		now := time.Now()
		if ok {
			return now, nil
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s: replica did not receive probe %d within %s", r, id, timeout)
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pgreplicaCatchUp applies everything pending to pgreplica's replica
// (untimed), so a timed run starts from nothing pending.
func (e *env) pgreplicaCatchUp(ctx context.Context) error {
	if out, err := e.pgreplicaCmd(ctx, "replicate", "--once"); err != nil {
		return fmt.Errorf("pgreplica replicate --once: %w\n%s", err, out)
	}
	return nil
}

// Native logical replication: a fresh subscription each time.

func (e *env) createSubscription(ctx context.Context, enabled bool) error {
	_, err := e.reps["native"].Exec(ctx, fmt.Sprintf(
		"CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s WITH (copy_data = false, enabled = %t)",
		nativeSub, e.origin.DSN(originDB), nativePub, enabled))
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	if enabled {
		return e.waitStreaming(ctx)
	}
	return nil
}

// waitStreaming waits until the subscription's apply worker runs and has
// heard from the walsender.
func (e *env) waitStreaming(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := e.reps["native"].QueryRow(ctx, `SELECT count(*) FROM pg_stat_subscription
			WHERE subname = $1 AND pid IS NOT NULL AND relid IS NULL AND last_msg_receipt_time IS NOT NULL`, nativeSub).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("native subscription did not start streaming within 30s")
}

func (e *env) dropSubscription(ctx context.Context) error {
	_, err := e.reps["native"].Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+nativeSub)
	return err
}
