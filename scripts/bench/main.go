// Command bench measures pgreplica side by side with native logical
// replication and (with --with-slony) Slony-I on two throwaway clusters of
// this machine: origin overhead, apply rate, lag and footprint. It prints a
// markdown table and writes JSON (bench-results/bench.json). Run it through
// scripts/bench.sh; see docs/performance.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Options of one bench run. Zero sizes take the full (or --quick) defaults.
type Options struct {
	Quick      bool
	WithSlony  bool
	Runs       int
	Out        string       // JSON file; "" writes none
	Pgreplica  string       // pgreplica binary; built from this module when empty
	Compare    []compareBin // other pgreplica binaries measured beside it (overhead, oldtxn)
	ProfileDir string       // profile the engine in-process on both backlogs instead of the scenarios
	Keep       bool         // keep the work directory (logs)
	Log        io.Writer

	Scale, Clients, Seconds int
	TPCBTxns, Inserts       int
	InsertTxnRows           int
	LagSeconds, LagTPS      int
	Durability              []string      // "off" (fsync = off, the harness's) and/or "on" (fsync = on, full_page_writes = on)
	OldTxnMinutes           int           // length of each old-open-transaction run, in intervals
	OldTxnInterval          time.Duration // one interval (a minute; 5s with --quick)
	OldTxnTPS               int
	QuietBusy               float64         // a sample waits until the CPUs are less busy than this (fraction)
	QuietWait               time.Duration   // ... for at most this long
	Scenarios               map[string]bool // overhead, apply, lag; nil: all
}

func (o *Options) defaults() {
	set := func(p *int, full, quick int) {
		if *p == 0 {
			*p = full
			if o.Quick {
				*p = quick
			}
		}
	}
	set(&o.Runs, 3, 1)
	set(&o.Scale, 10, 1)
	set(&o.Clients, 4, 4)
	set(&o.Seconds, 30, 4)
	set(&o.TPCBTxns, 200000, 5000)
	set(&o.Inserts, 1000000, 20000)
	set(&o.InsertTxnRows, 1000, 1000)
	set(&o.LagSeconds, 30, 4)
	set(&o.LagTPS, 200, 200)
	set(&o.OldTxnMinutes, 2, 2)
	set(&o.OldTxnTPS, 300, 300)
	if o.OldTxnInterval == 0 {
		o.OldTxnInterval = time.Minute
		if o.Quick {
			o.OldTxnInterval = 3 * time.Second
		}
	}
	if len(o.Durability) == 0 {
		o.Durability = []string{"off", "on"}
	}
	if o.QuietBusy == 0 {
		o.QuietBusy = 0.25
	}
	if o.QuietWait == 0 && !o.Quick {
		o.QuietWait = 2 * time.Minute
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
}

func (o *Options) want(s string) bool { return o.Scenarios == nil || o.Scenarios[s] }

func main() {
	var o Options
	var scen, durability string
	flag.BoolVar(&o.Quick, "quick", false, "a smoke test: scale 1, a few seconds per scenario, small backlogs, 1 run")
	flag.BoolVar(&o.WithSlony, "with-slony", false, "also measure Slony-I (needs slonik and slon on PATH)")
	flag.IntVar(&o.Runs, "runs", 0, "interleaved runs per figure (default 3; 1 with --quick)")
	flag.StringVar(&o.Out, "out", "bench-results/bench.json", "JSON output file")
	flag.StringVar(&o.Pgreplica, "pgreplica", "", "pgreplica binary (default: build ./cmd/pgreplica)")
	flag.StringVar(&o.ProfileDir, "profile", "", "instead of the scenarios, profile the engine in-process on the two backlogs; write pprof files and pg_stat_statements tops to DIR")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work directory (server, slon and pgreplica logs)")
	flag.IntVar(&o.Scale, "scale", 0, "pgbench scale (default 10; 1 with --quick)")
	flag.IntVar(&o.Seconds, "seconds", 0, "seconds per overhead run (default 30)")
	flag.IntVar(&o.TPCBTxns, "tpcb-txns", 0, "TPC-B transactions in the apply backlog (default 200000)")
	flag.IntVar(&o.Inserts, "inserts", 0, "rows in the insert backlog (default 1000000)")
	flag.IntVar(&o.InsertTxnRows, "insert-txn-rows", 0, "rows per transaction in the insert backlog (default 1000)")
	flag.IntVar(&o.LagSeconds, "lag-seconds", 0, "seconds of the steady-rate lag run (default 30)")
	flag.DurationVar(&o.QuietWait, "quiet-wait", 0, "before each sample, wait up to this long for other processes to leave the CPUs (under 25% busy) (default 2m, 25m in all; 0s with --quick)")
	flag.StringVar(&scen, "scenarios", "", "comma-separated subset of overhead,apply,lag,oldtxn,multimaster (default all)")
	flag.StringVar(&durability, "durability", "off,on", "overhead and apply with fsync = off (the test harness's setting) and/or on (PostgreSQL's default durability): off, on or off,on")
	flag.Func("compare", "NAME=BINARY: also measure this pgreplica binary in the overhead and old-open-transaction scenarios, interleaved with the others (repeatable)", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("want NAME=BINARY (got %q)", v)
		}
		o.Compare = append(o.Compare, compareBin{name, path})
		return nil
	})
	flag.IntVar(&o.OldTxnMinutes, "oldtxn-minutes", 0, "minutes of each old-open-transaction run (default 2; the issue's target is for 5)")
	flag.IntVar(&o.OldTxnTPS, "oldtxn-tps", 0, "TPC-B rate during the old-open-transaction runs (default 300)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if scen != "" {
		o.Scenarios = map[string]bool{}
		for _, s := range splitComma(scen) {
			if s != "overhead" && s != "apply" && s != "lag" && s != "oldtxn" && s != "multimaster" {
				fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (overhead, apply, lag, oldtxn, multimaster)\n", s)
				os.Exit(2)
			}
			o.Scenarios[s] = true
		}
	}
	for _, d := range splitComma(durability) {
		if d != "off" && d != "on" {
			fmt.Fprintf(os.Stderr, "bench: --durability: want off, on or off,on (got %q)\n", durability)
			os.Exit(2)
		}
		o.Durability = append(o.Durability, d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.ProfileDir != "" {
		if err := Profile(ctx, o); err != nil {
			fmt.Fprintf(os.Stderr, "bench: error: %v\n", err)
			os.Exit(1)
		}
		return
	}
	rep, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: error: %v\n", err)
		os.Exit(1)
	}
	fmt.Print(rep.Markdown())
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// Run starts the clusters, runs every scenario Runs times interleaved and
// returns the report (also written to o.Out as JSON).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if o.Runs < 1 {
		return nil, errors.New("--runs must be at least 1")
	}
	started := time.Now()
	e, err := setup(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep := newReport(e)
	for run := 0; run < o.Runs; run++ {
		if o.want("overhead") {
			for _, v := range rotate(e.overheadVariants(), run) {
				e.logf("run %d/%d overhead: %s", run+1, o.Runs, v)
				s, err := e.overhead(ctx, v)
				if err != nil {
					return nil, fmt.Errorf("overhead %s: %w", v, err)
				}
				e.logf("  %.1f tps; CPU %.3f ms/txn (origin server %.3f)", s.TPS, 1000*s.CPU/float64(s.Txns), 1000*s.OriginCPU/float64(s.Txns))
				rep.addOverhead(v, s)
				e.note("overhead", v, run, s.TPS)
			}
		}
		if o.want("apply") {
			for _, d := range o.Durability {
				if o.Quick && d == "on" {
					continue // the quick run proves the fsync = on switch in the overhead runs
				}
				if err := e.setDurability(ctx, d); err != nil {
					return nil, err
				}
				for _, kind := range []string{kindTPCB, kindInserts} {
					key := kind + durabilitySuffix(d)
					for _, r := range rotate(e.replicators(), run) {
						e.logf("run %d/%d apply %s backlog: %s", run+1, o.Runs, key, r)
						s, err := e.apply(ctx, r, kind)
						if err != nil {
							return nil, fmt.Errorf("apply %s %s: %w", key, r, err)
						}
						e.logf("  %d row changes in %.2fs: %.0f/s; CPU %.2f µs per row change", s.Changes, s.Seconds, float64(s.Changes)/s.Seconds, 1e6*s.SysCPU/float64(s.Changes))
						rep.addApply(key, r, s)
						e.note("apply "+key, r, run, float64(s.Changes)/s.Seconds)
					}
				}
			}
			if err := e.setDurability(ctx, "off"); err != nil {
				return nil, err
			}
			e.logf("run %d/%d apply %s backlog: pgreplica", run+1, o.Runs, kindSmall)
			s, err := e.apply(ctx, "pgreplica", kindSmall)
			if err != nil {
				return nil, fmt.Errorf("apply %s: %w", kindSmall, err)
			}
			rep.addApply(kindSmall, "pgreplica", s)
			e.note("apply "+kindSmall, "pgreplica", run, float64(s.Changes)/s.Seconds)
		}
		// The old open transaction and the lag run at fsync = off.
		if err := e.setDurability(ctx, "off"); err != nil {
			return nil, err
		}
		if o.want("oldtxn") {
			bins := append([]compareBin{{"", e.pgreplica}}, o.Compare...)
			for _, open := range rotateBool(run) {
				for _, bin := range bins {
					e.logf("run %d/%d old open transaction (%t) %s: %d × %s at %d TPS", run+1, o.Runs, open, bin.name, o.OldTxnMinutes, o.OldTxnInterval, o.OldTxnTPS)
					s, err := e.oldTxn(ctx, open, bin.path)
					if err != nil {
						return nil, fmt.Errorf("old open transaction: %w", err)
					}
					e.logf("  reading session CPU per interval: %v s", s.CPU)
					rep.addOldTxn(bin.name, open, s)
				}
			}
		}
		if o.want("lag") {
			for _, r := range rotate(e.lagReplicators(), run) {
				e.logf("run %d/%d lag at %d TPS: %s", run+1, o.Runs, o.LagTPS, r)
				s, err := e.lag(ctx, r)
				if err != nil {
					return nil, fmt.Errorf("lag %s: %w", r, err)
				}
				e.logf("  p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (%d probes, %d lost)", s.P50, s.P95, s.P99, s.Probes, s.Lost)
				rep.addLag(r, s)
				e.note("lag p50", r, run, s.P50)
			}
		}
	}
	if o.want("multimaster") {
		if err := e.setDurability(ctx, "off"); err != nil {
			return nil, err
		}
		e.logf("multi-master node: pgbench on node a, plain and with capture + the engine applying to node b")
		mm, err := e.multiMaster(ctx, o.Runs)
		if err != nil {
			return nil, fmt.Errorf("multi-master: %w", err)
		}
		e.logf("  multi-master / plain TPS: %.2f", mm.Ratio)
		rep.MultiMaster = mm
	}
	rep.Samples = e.samples
	rep.finish(time.Since(started))
	if o.Out != "" {
		if err := rep.writeJSON(o.Out); err != nil {
			return nil, err
		}
		e.logf("wrote %s", o.Out)
	}
	return rep, nil
}

// compareBin is another pgreplica binary measured beside the main one.
type compareBin struct{ name, path string }

func cpus() int { return runtime.NumCPU() }

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
