package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

// Overhead variants, in the order of the table.
const (
	vNone          = "none"
	vCapture       = "pgreplica capture alone"
	vFiltered      = "pgreplica capture alone, a row filter on each table"
	vPgreplica     = "pgreplica capture + applier"
	vNative        = "native logical replication"
	vSlonyTriggers = "Slony-I log triggers alone"
	vSlony         = "Slony-I (triggers + slon daemons)"
)

func (e *env) overheadVariants() []string {
	base := []string{vNone, vCapture, vFiltered, vPgreplica, vNative}
	if e.slony != nil {
		base = append(base, vSlonyTriggers, vSlony)
	}
	var v []string
	for _, d := range e.opt.Durability {
		for _, b := range base {
			v = append(v, b+durabilitySuffix(d))
			if b == vPgreplica {
				for _, c := range e.opt.Compare {
					v = append(v, b+" ["+c.name+"]"+durabilitySuffix(d))
				}
			}
		}
	}
	return v
}

// compareBinary returns a variant's name without its "[name]" of a
// compared binary, and that binary (the main one when there is none).
func (e *env) compareBinary(v string) (string, string) {
	for _, c := range e.opt.Compare {
		if b, ok := strings.CutSuffix(v, " ["+c.name+"]"); ok {
			return b, c.path
		}
	}
	return v, e.pgreplica
}

// fsyncOn marks the variants, backlogs and rows measured with fsync = on.
const fsyncOn = " (fsync on)"

func durabilitySuffix(d string) string {
	if d == "on" {
		return fsyncOn
	}
	return ""
}

// splitVariant returns a variant's base name and durability.
func splitVariant(v string) (string, string) {
	if b, ok := strings.CutSuffix(v, fsyncOn); ok {
		return b, "on"
	}
	return v, "off"
}

// setDurability sets fsync and full_page_writes on both clusters: "off" is
// the test harness's setting (CPU costs, not disks), "on" PostgreSQL's
// default durability (synchronous_commit is on in both).
func (e *env) setDurability(ctx context.Context, d string) error {
	if e.durability == d {
		return nil
	}
	for _, c := range []*pgtest.Cluster{e.origin, e.replica} {
		for _, sql := range []string{"ALTER SYSTEM SET fsync = " + d, "ALTER SYSTEM SET full_page_writes = " + d, "SELECT pg_reload_conf()"} {
			if err := c.Exec(ctx, "postgres", sql); err != nil {
				return fmt.Errorf("durability %s on %s: %w", d, c.Name, err)
			}
		}
	}
	e.durability = d
	// Let the servers' processes take the new settings.
	time.Sleep(500 * time.Millisecond)
	return nil
}

// lagReplicators are the replicators of the lag run: with every compared
// pgreplica binary.
func (e *env) lagReplicators() []string {
	r := e.replicators()
	for _, c := range e.opt.Compare {
		r = append(r, "pgreplica ["+c.name+"]")
	}
	return r
}

func (e *env) replicators() []string {
	r := []string{"pgreplica", "native"}
	if e.slony != nil {
		r = append(r, "slony")
	}
	return r
}

// rotate returns list rotated left by k: run k starts with another variant.
func rotate(list []string, k int) []string {
	k %= len(list)
	return append(append([]string{}, list[k:]...), list[:k]...)
}

func (e *env) tpcbArgs() []string {
	threads := e.opt.Clients
	if threads > 2 {
		threads = 2
	}
	return []string{"-n", "-c", strconv.Itoa(e.opt.Clients), "-j", strconv.Itoa(threads)}
}

// overheadSample is one timed pgbench run of a variant.
type overheadSample struct {
	TPS       float64
	Txns      int64
	CPU       float64 // seconds: both servers, the replicator's processes, pgbench
	OriginCPU float64 // seconds: the origin server alone
}

// overhead is one timed pgbench run of a variant.
func (e *env) overhead(ctx context.Context, variant string) (overheadSample, error) {
	var s overheadSample
	variant, durability := splitVariant(variant)
	variant, bin := e.compareBinary(variant)
	if err := e.setDurability(ctx, durability); err != nil {
		return s, err
	}
	if err := e.reset(ctx); err != nil {
		return s, err
	}
	var after func() error
	switch variant {
	case vNone:
	case vCapture:
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return s, err
		}
	case vFiltered:
		if err := e.setFilters(ctx, true); err != nil {
			return s, err
		}
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return s, err
		}
		after = func() error { return e.setFilters(ctx, false) }
	case vPgreplica:
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return s, err
		}
		if _, err := e.startDaemonBin(ctx, bin); err != nil {
			return s, err
		}
		after = e.stopDaemon
	case vNative:
		if err := e.createSubscription(ctx, true); err != nil {
			return s, err
		}
		after = func() error { return e.dropSubscription(ctx) }
	case vSlonyTriggers:
		if err := e.setMode(ctx, "slony"); err != nil {
			return s, err
		}
		// Untimed: let the replica catch up, so the next run starts level.
		after = func() error { defer e.slony.stop(); return e.slony.sync(ctx, 30*time.Minute) }
	case vSlony:
		if err := e.setMode(ctx, "slony"); err != nil {
			return s, err
		}
		if err := e.slony.sync(ctx, 10*time.Minute); err != nil {
			return s, err
		}
		after = func() error { defer e.slony.stop(); return e.slony.sync(ctx, 30*time.Minute) }
	}
	time.Sleep(time.Second)
	args := append(e.tpcbArgs(), "-T", strconv.Itoa(e.opt.Seconds))
	e.busy, e.waited = e.quiet(ctx)
	m := e.cpuStart()
	r, err := e.pgbench(ctx, e.origin, originDB, args...)
	s.CPU, s.OriginCPU = m.stop(ctx)
	s.CPU += r.CPU
	if after != nil {
		if aerr := after(); err == nil {
			err = aerr
		}
	}
	if err != nil {
		return s, err
	}
	if r.TPS <= 0 || r.Txns <= 0 {
		return s, fmt.Errorf("%s: no tps in pgbench output:\n%s", variant, tail(r.Output, 10))
	}
	s.TPS, s.Txns = r.TPS, r.Txns
	return s, nil
}

// Apply-rate backlogs.
const (
	kindTPCB    = "tpcb"
	kindInserts = "inserts"
	kindSmall   = "inserts-small" // a tenth of the insert backlog, pgreplica only: does memory grow with the backlog?
)

// applySample is one timed catch-up.
type applySample struct {
	Seconds    float64
	Changes    int64 // row changes in the backlog (events for pgreplica)
	Txns       int64
	Events     int64 // pgreplica: events in the log
	LogBytes   int64 // pgreplica: size of the event log
	MaxRSS     int64
	CPU        float64
	AppliedDiv int64   // pgreplica: events the replica counted as applied
	SysCPU     float64 // seconds: both servers and the replicator during the catch-up
}

func (e *env) insertsScript() (string, error) {
	path := filepath.Join(e.work, "inserts.sql")
	script := fmt.Sprintf("INSERT INTO bench_insert (v, pad) SELECT g, 'row ' || g FROM generate_series(1, %d) g;\n", e.opt.InsertTxnRows)
	return path, os.WriteFile(path, []byte(script), 0o644)
}

// backlog builds the backlog of kind on the origin and returns the row
// changes and transactions in it.
func (e *env) backlog(ctx context.Context, kind string) (changes, txns int64, err error) {
	c := e.opt.Clients
	switch kind {
	case kindTPCB:
		per := e.opt.TPCBTxns / c
		if _, err := e.pgbench(ctx, e.origin, originDB, append(e.tpcbArgs(), "-t", strconv.Itoa(per))...); err != nil {
			return 0, 0, err
		}
		txns = int64(per * c)
		return 4 * txns, txns, nil // 3 updates and 1 insert each
	default:
		rows := e.opt.Inserts
		if kind == kindSmall {
			rows /= 10
		}
		script, err := e.insertsScript()
		if err != nil {
			return 0, 0, err
		}
		per := rows / e.opt.InsertTxnRows / c
		if per < 1 {
			per = 1
		}
		if _, err := e.pgbench(ctx, e.origin, originDB, append(e.tpcbArgs(), "-t", strconv.Itoa(per), "-f", script)...); err != nil {
			return 0, 0, err
		}
		txns = int64(per * c)
		return txns * int64(e.opt.InsertTxnRows), txns, nil
	}
}

// apply builds a backlog with replicator r's applier stopped, then times
// its catch-up.
func (e *env) apply(ctx context.Context, r, kind string) (applySample, error) {
	var s applySample
	if err := e.reset(ctx); err != nil {
		return s, err
	}
	switch r {
	case "pgreplica":
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return s, err
		}
		if err := e.pgreplicaCatchUp(ctx); err != nil {
			return s, err
		}
	case "native":
		// The slot is made now; the walsender decodes nothing until ENABLE.
		if err := e.createSubscription(ctx, false); err != nil {
			return s, err
		}
		defer e.dropSubscription(ctx)
	case "slony":
		if err := e.setMode(ctx, "slony"); err != nil {
			return s, err
		}
		if err := e.slony.sync(ctx, 30*time.Minute); err != nil {
			return s, err
		}
		defer e.slony.stop()
		// The subscriber's slon is stopped; the origin's keeps making SYNCs.
		e.slony.stopNode(2)
	}
	var err error
	if s.Changes, s.Txns, err = e.backlog(ctx, kind); err != nil {
		return s, err
	}
	mark, err := e.marker(ctx)
	if err != nil {
		return s, err
	}
	e.busy, e.waited = e.quiet(ctx)
	m := e.cpuStart()
	switch r {
	case "pgreplica":
		if err := e.og.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgreplica.log),
			pg_total_relation_size('pgreplica.log_0') + pg_total_relation_size('pgreplica.log_1') + pg_total_relation_size('pgreplica.log_2')`).
			Scan(&s.Events, &s.LogBytes); err != nil {
			return s, err
		}
		before, err := e.appliedEvents(ctx)
		if err != nil {
			return s, err
		}
		p, err := e.timedPgreplica(ctx, "replicate", "--once")
		if err != nil {
			return s, err
		}
		s.Seconds, s.MaxRSS, s.CPU = p.Wall.Seconds(), p.MaxRSS, p.CPU
		s.SysCPU, _ = m.stop(ctx)
		s.SysCPU += p.CPU
		after, err := e.appliedEvents(ctx)
		if err != nil {
			return s, err
		}
		s.AppliedDiv = after - before
		if _, err := e.waitFor(ctx, r, mark, 0); err != nil {
			return s, fmt.Errorf("after replicate --once: %w", err)
		}
	case "native":
		t0 := time.Now()
		if _, err := e.reps["native"].Exec(ctx, "ALTER SUBSCRIPTION "+nativeSub+" ENABLE"); err != nil {
			return s, err
		}
		t1, err := e.waitFor(ctx, r, mark, time.Hour)
		if err != nil {
			return s, err
		}
		s.SysCPU, _ = m.stop(ctx)
		s.Seconds = t1.Sub(t0).Seconds()
	case "slony":
		t0 := time.Now()
		if err := e.slony.start(2); err != nil {
			return s, err
		}
		t1, err := e.waitFor(ctx, r, mark, time.Hour)
		if err != nil {
			return s, err
		}
		s.SysCPU, _ = m.stop(ctx)
		s.Seconds = t1.Sub(t0).Seconds()
	}
	return s, nil
}

func (e *env) appliedEvents(ctx context.Context) (int64, error) {
	var n int64
	err := e.reps["pgreplica"].QueryRow(ctx,
		"SELECT coalesce(sum(applied_events), 0)::bigint FROM pgreplica.position WHERE set_name = $1", setName).Scan(&n)
	return n, err
}

// lagSample is one steady-rate run: percentiles of probe arrival times.
type lagSample struct {
	P50, P95, P99, Max float64
	Probes, Lost       int64
	TPS                float64
}

// lag runs pgbench at a steady rate with replicator r streaming, and probes
// every 20 ms.
func (e *env) lag(ctx context.Context, r string) (lagSample, error) {
	var s lagSample
	if err := e.reset(ctx); err != nil {
		return s, err
	}
	r, bin := e.compareBinary(r)
	switch r {
	case "pgreplica":
		if err := e.setMode(ctx, "pgreplica"); err != nil {
			return s, err
		}
		if err := e.pgreplicaCatchUp(ctx); err != nil {
			return s, err
		}
		if _, err := e.startDaemonBin(ctx, bin); err != nil {
			return s, err
		}
		defer e.stopDaemon()
	case "native":
		if err := e.createSubscription(ctx, true); err != nil {
			return s, err
		}
		defer e.dropSubscription(ctx)
	case "slony":
		if err := e.setMode(ctx, "slony"); err != nil {
			return s, err
		}
		if err := e.slony.sync(ctx, 30*time.Minute); err != nil {
			return s, err
		}
		defer e.slony.stop()
	}
	probe, err := pgx.Connect(ctx, e.origin.DSN(originDB))
	if err != nil {
		return s, err
	}
	defer probe.Close(ctx)

	e.busy, e.waited = e.quiet(ctx)
	stop := make(chan struct{})
	var first, last int64
	var perr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var id int64
			if err := probe.QueryRow(ctx, "INSERT INTO lagprobe DEFAULT VALUES RETURNING id").Scan(&id); err != nil {
				perr = err
				return
			}
			if first == 0 {
				first = id
			}
			last = id
		}
	}()
	args := append(e.tpcbArgs(), "-R", strconv.Itoa(e.opt.LagTPS), "-T", strconv.Itoa(e.opt.LagSeconds))
	res, err := e.pgbench(ctx, e.origin, originDB, args...)
	close(stop)
	wg.Wait()
	if err != nil {
		return s, err
	}
	if perr != nil {
		return s, fmt.Errorf("probe: %w", perr)
	}
	if first == 0 {
		return s, fmt.Errorf("%s: no probe was inserted", r)
	}
	s.TPS = res.TPS
	if _, err := e.waitFor(ctx, r, last, 2*time.Minute); err != nil {
		return s, err
	}
	err = e.reps[r].QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
			percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*)
		FROM lagresult WHERE id BETWEEN $1 AND $2`, first, last).Scan(&s.P50, &s.P95, &s.P99, &s.Max, &s.Probes)
	if err != nil {
		return s, err
	}
	s.Lost = last - first + 1 - s.Probes
	return s, nil
}

// filteredTables are the TPC-B tables; each has bid, the branch.
var filteredTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

// setFilters gives (or takes back) one replica a row filter on each TPC-B
// table, half of the branches, as install records a checked rule, and
// makes their capture functions again: capture then tests the old and the
// new row of each change and logs whole new rows on UPDATE.
func (e *env) setFilters(ctx context.Context, on bool) error {
	var sql strings.Builder
	for _, t := range filteredTables {
		fmt.Fprintf(&sql, "DELETE FROM pgreplica.capture_rule WHERE relid = '%s'::regclass;\n", t)
		if on {
			fmt.Fprintf(&sql, `INSERT INTO pgreplica.capture_rule (relid, filters) VALUES ('%s'::regclass, '{"filtered": "((bid %% 2) = 1)"}');`+"\n", t)
		}
		fmt.Fprintf(&sql, "SELECT pgreplica.refresh_table('%s'::regclass);\n", t)
	}
	if _, err := e.og.Exec(ctx, sql.String()); err != nil {
		return fmt.Errorf("filters %v: %w", on, err)
	}
	return nil
}
