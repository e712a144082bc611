package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Scenario 5, an old open writing transaction: pgbench TPC-B at a steady
// rate with pgreplica streaming, once as it is and once while another
// session holds a transaction open that has written a captured row (an
// application session left idle in transaction). The CPU of pgreplica's
// reading session on the origin is read from /proc every interval (a
// minute): a read that filters by the oldest open transaction rescans
// everything logged since that transaction began, and its cost grows
// minute by minute.

// oldTxnSample is one run: the reading session's CPU seconds per interval.
type oldTxnSample struct {
	CPU []float64
	TPS float64
}

// rotateBool gives the order of the two runs (without, with) of run k.
func rotateBool(k int) []bool {
	if k%2 == 0 {
		return []bool{false, true}
	}
	return []bool{true, false}
}

func (e *env) oldTxn(ctx context.Context, open bool, bin string) (oldTxnSample, error) {
	var s oldTxnSample
	if err := e.reset(ctx); err != nil {
		return s, err
	}
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
	if open {
		c, err := pgx.Connect(ctx, e.origin.DSN(originDB))
		if err != nil {
			return s, err
		}
		defer c.Close(context.WithoutCancel(ctx)) // rolls it back
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			return s, err
		}
		if _, err := c.Exec(ctx, "INSERT INTO lagprobe DEFAULT VALUES"); err != nil {
			return s, err
		}
	}
	pid, err := e.readSessionPID(ctx)
	if err != nil {
		return s, err
	}
	e.busy, e.waited = e.quiet(ctx)
	n := e.opt.OldTxnMinutes
	total := time.Duration(n) * e.opt.OldTxnInterval
	type result struct {
		r   pgbenchResult
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		args := append(e.tpcbArgs(), "-R", strconv.Itoa(e.opt.OldTxnTPS), "-T", strconv.Itoa(int(total.Seconds())))
		r, err := e.pgbench(ctx, e.origin, originDB, args...)
		done <- result{r, err}
	}()
	prev := procCPU(pid)
	for i := 1; i <= n; i++ {
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(i) * e.opt.OldTxnInterval))):
		}
		cur := procCPU(pid)
		if cur < 0 {
			return s, errors.New("pgreplica's reading session ended during the run (reconnected?)")
		}
		s.CPU = append(s.CPU, cur-prev)
		prev = cur
	}
	res := <-done
	if res.err != nil {
		return s, res.err
	}
	s.TPS = res.r.TPS
	if again, err := e.readSessionPID(ctx); err != nil || again != pid {
		return s, fmt.Errorf("pgreplica's reading session changed during the run (pid %d, now %d, %v)", pid, again, err)
	}
	return s, nil
}

// readSessionPID is the backend pid of the running daemon's reading session.
func (e *env) readSessionPID(ctx context.Context) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pid int
		err := e.og.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgreplica read %'`).Scan(&pid)
		if err == nil {
			return pid, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			return 0, fmt.Errorf("find pgreplica's reading session: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procCPU is the user + system CPU seconds of a process so far, or -1 when
// it is gone.
func procCPU(pid int) float64 {
	p, ok := readProcs()[pid]
	if !ok {
		return -1
	}
	return float64(p.own) / clockTicks
}
