package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

// MultiMasterResult is the cost of multi-master on a node's own writes:
// pgbench TPC-B on node a alone (no capture), then with capture (row
// versions included) and the engine applying a's changes to node b.
type MultiMasterResult struct {
	PlainTPS       []float64 `json:"plain_tps"`
	MultiMasterTPS []float64 `json:"multi_master_tps"`
	Ratio          float64   `json:"ratio"` // median multi-master / median plain
	// CPU seconds per transaction (both servers, the engine, pgbench), and
	// their ratio plain / multi-master: steadier than TPS on a busy machine.
	PlainCPUPerTxn       []float64 `json:"plain_cpu_per_txn"`
	MultiMasterCPUPerTxn []float64 `json:"multi_master_cpu_per_txn"`
	CPURatio             float64   `json:"cpu_ratio"`
	// Capture alone (row versions kept, nothing applied): where the cost is.
	CaptureTPS       []float64 `json:"capture_tps"`
	CaptureCPUPerTxn []float64 `json:"capture_cpu_per_txn"`
	CaptureCPURatio  float64   `json:"capture_cpu_ratio"`
}

// multiMaster measures MultiMasterResult on two databases of their own
// (mm_a on the origin cluster, mm_b on the replica cluster), made like the
// others (pgbench -i, the same schema) and installed as a 2-node set.
func (e *env) multiMaster(ctx context.Context, runs int) (*MultiMasterResult, error) {
	const dbA, dbB = "mm_a", "mm_b"
	for _, c := range []struct {
		cl *pgtest.Cluster
		db string
	}{{e.origin, dbA}, {e.replica, dbB}} {
		if err := c.cl.Exec(ctx, "postgres", "CREATE DATABASE "+c.db); err != nil {
			return nil, err
		}
		if _, err := e.pgbench(ctx, c.cl, c.db, "-i", "-q", "-s", strconv.Itoa(e.opt.Scale)); err != nil {
			return nil, err
		}
		if err := c.cl.Exec(ctx, c.db, schemaSQL); err != nil {
			return nil, err
		}
	}
	cfgPath := filepath.Join(e.work, "mm.yaml")
	cfg := fmt.Sprintf("name: mm\nnodes:\n  - name: a\n    dsn: %q\n  - name: b\n    dsn: %q\ntables:\n  include: [\"public.*\"]\n",
		e.origin.DSN(dbA), e.replica.DSN(dbB))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	e.logf("pgreplica install (multi-master, sequences offset per node)")
	if out, err := exec.CommandContext(ctx, e.pgreplica, "-c", cfgPath, "install", "--yes").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("install: %w\n%s", err, out)
	}
	a, err := pgx.Connect(ctx, e.origin.DSN(dbA))
	if err != nil {
		return nil, err
	}
	defer a.Close(context.Background())
	capture := func(on bool) error {
		var sql strings.Builder
		for _, t := range benchTables {
			if on {
				fmt.Fprintf(&sql, "ALTER TABLE %s ENABLE TRIGGER pgreplica_capture;\n", t)
			} else {
				fmt.Fprintf(&sql, "ALTER TABLE %s DISABLE TRIGGER USER;\n", t)
			}
		}
		_, err := a.Exec(ctx, sql.String())
		return err
	}
	res := &MultiMasterResult{}
	args := append(e.tpcbArgs(), "-T", strconv.Itoa(e.opt.Seconds))
	const plainV, captureV, engineV = 0, 1, 2
	for run := 0; run < runs; run++ {
		order := []int{plainV, captureV, engineV}
		for i := range order {
			v := order[(i+run)%len(order)]
			mm := v == engineV
			if err := capture(v != plainV); err != nil {
				return nil, err
			}
			var d *daemon
			if mm {
				cmd := exec.Command(e.pgreplica, "-c", cfgPath, "run", "--log-level", "warn")
				f, err := os.Create(filepath.Join(e.work, "mm-run.log"))
				if err != nil {
					return nil, err
				}
				cmd.Stdout, cmd.Stderr = f, f
				if err := cmd.Start(); err != nil {
					return nil, err
				}
				d = &daemon{cmd: cmd, done: make(chan error, 1), log: f}
				go func() { d.done <- cmd.Wait() }()
				time.Sleep(time.Second)
			}
			if _, err := a.Exec(ctx, "CHECKPOINT"); err != nil {
				return nil, err
			}
			e.daemon = d
			meter := e.cpuStart()
			r, err := e.pgbench(ctx, e.origin, dbA, args...)
			cpu, _ := meter.stop(ctx)
			e.daemon = nil
			cpu += r.CPU
			if d != nil {
				if _, serr := d.stop(); err == nil && serr != nil {
					err = serr
				}
			}
			if err != nil {
				return nil, err
			}
			e.logf("  %s: %.1f tps; CPU %.3f ms/txn", []string{"plain", "capture alone", "capture + engine"}[v], r.TPS, 1000*cpu/float64(r.Txns))
			if r.Txns <= 0 {
				return nil, fmt.Errorf("no transactions in pgbench output:\n%s", tail(r.Output, 10))
			}
			switch v {
			case engineV:
				res.MultiMasterTPS = append(res.MultiMasterTPS, r.TPS)
				res.MultiMasterCPUPerTxn = append(res.MultiMasterCPUPerTxn, cpu/float64(r.Txns))
			case captureV:
				res.CaptureTPS = append(res.CaptureTPS, r.TPS)
				res.CaptureCPUPerTxn = append(res.CaptureCPUPerTxn, cpu/float64(r.Txns))
			default:
				res.PlainTPS = append(res.PlainTPS, r.TPS)
				res.PlainCPUPerTxn = append(res.PlainCPUPerTxn, cpu/float64(r.Txns))
			}
		}
	}
	plain, mm := Stat{Runs: res.PlainTPS}, Stat{Runs: res.MultiMasterTPS}
	plain.finish()
	mm.finish()
	if plain.Median > 0 {
		res.Ratio = mm.Median / plain.Median
	}
	pc, mc := Stat{Runs: res.PlainCPUPerTxn}, Stat{Runs: res.MultiMasterCPUPerTxn}
	pc.finish()
	mc.finish()
	if mc.Median > 0 {
		res.CPURatio = pc.Median / mc.Median
	}
	cc := Stat{Runs: res.CaptureCPUPerTxn}
	cc.finish()
	if cc.Median > 0 {
		res.CaptureCPURatio = pc.Median / cc.Median
	}
	return res, nil
}
