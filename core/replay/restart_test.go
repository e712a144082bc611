package replay_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

const bankSchema = `
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE history (id bigserial PRIMARY KEY, account int, delta int, at timestamptz DEFAULT now());`

// load runs small bank transactions on the origin until ctx ends (the one
// in flight then is finished), reconnecting after errors (the origin may
// restart). It returns how many committed.
func load(ctx context.Context, dsn string, workers int) func() int64 {
	var committed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *pgx.Conn
			for ctx.Err() == nil {
				if conn == nil {
					c, err := pgx.Connect(ctx, dsn)
					if err != nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conn = c
				}
				acct, delta := rand.IntN(100)+1, rand.IntN(200)-100
				// A transaction once begun is not cancelled by the end of
				// ctx: one cancelled after its first trigger ran would
				// leave a gap in the log's ids, which the crash test
				// counts events by (its log is purged).
				tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				_, err := conn.Exec(tctx, `BEGIN;
UPDATE counter SET n = n + 1 WHERE id = 1;
UPDATE accounts SET balance = balance + `+itoa(delta)+` WHERE id = `+itoa(acct)+`;
INSERT INTO history (account, delta) VALUES (`+itoa(acct)+`, `+itoa(delta)+`);
COMMIT`)
				cancel()
				if err != nil {
					conn.Close(context.Background())
					conn = nil
					continue
				}
				committed.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
	}
	return func() int64 { wg.Wait(); return committed.Load() }
}

func itoa(i int) string { return strconv.Itoa(i) }

// While a write load runs, the replica cluster and then the origin cluster
// are restarted under the running engine: it retries, resumes from its
// position, and in the end every table is equal and every event was
// applied exactly once.
func TestEngineSurvivesServerRestartsUnderLoad(t *testing.T) {
	p := shared.Get(t)
	if p.Origin.LogFile() == "" {
		t.Skip("needs clusters of its own (not external servers) to restart them")
	}
	e := newEnv(t, bankSchema, 1)
	exec(t, e.origin, "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g; INSERT INTO counter VALUES (1, 0)")
	e.once()
	e.cfg.PollInterval = 200 * time.Millisecond

	engCtx, stopEngine := context.WithCancel(e.ctx)
	eng := e.engine()
	engDone := make(chan struct{})
	go func() { eng.Run(engCtx); close(engDone) }()

	loadCtx, stopLoad := context.WithCancel(e.ctx)
	wait := load(loadCtx, e.cfg.Origin.DSN, 3)
	time.Sleep(time.Second)
	restart(t, p.Replica, "immediate")
	time.Sleep(time.Second)
	restart(t, p.Origin, "fast")
	time.Sleep(time.Second)
	stopLoad()
	committed := wait()
	if committed < 50 {
		t.Fatalf("only %d transactions committed under load", committed)
	}

	// The replica connection in the test helper died with the restart.
	e.replicas[0] = connect(t, e.cfg.Replicas[0].DSN)
	e.origin = connect(t, e.cfg.Origin.DSN)
	total := settledCount(t, e.origin)
	waitFor(t, 60*time.Second, func() bool {
		return queryInt(t, e.replicas[0], "SELECT applied_events FROM pgreplica.position") >= total
	})
	stopEngine()
	<-engDone
	e.requireEqual(0, "accounts", "counter", "history")
	applied := queryInt(t, e.replicas[0], "SELECT applied_events FROM pgreplica.position")
	if applied != total {
		t.Fatalf("replica applied %d events, the origin captured %d", applied, total)
	}
	// Every transaction bumped the counter once and wrote one history row
	// (a COMMIT whose reply was lost in a restart still counts: compare
	// with the databases, not with the client's tally).
	n, h := queryInt(t, e.replicas[0], "SELECT n FROM counter"), queryInt(t, e.replicas[0], "SELECT count(*) FROM history")
	if n != h || n < committed {
		t.Fatalf("replica counter = %d, history rows = %d, transactions acknowledged = %d", n, h, committed)
	}
	if c := queryInt(t, e.replicas[0], "SELECT count(*) FROM pgreplica.conflict"); c != 0 {
		t.Fatalf("%d conflicts recorded", c)
	}
}

func restart(t *testing.T, c *pgtest.Cluster, mode string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Restart(ctx, mode); err != nil {
		t.Fatalf("restart %s: %v", c.Name, err)
	}
}

// Two engines applying the same set to the same replica at once (two
// daemons started by mistake): the position's compare-and-set lets only
// one apply each batch, so every event is applied exactly once.
func TestTwoAppliersOnOneReplicaApplyEachEventOnce(t *testing.T) {
	e := newEnv(t, bankSchema, 1)
	exec(t, e.origin, "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g; INSERT INTO counter VALUES (1, 0)")
	e.once()
	e.cfg.PollInterval = 50 * time.Millisecond
	e.cfg.Batch.MaxEvents = 20
	ctx, stop := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		eng := e.engine()
		wg.Add(1)
		go func() { defer wg.Done(); eng.Run(ctx) }()
	}
	loadCtx, stopLoad := context.WithTimeout(e.ctx, 3*time.Second)
	defer stopLoad()
	load(loadCtx, e.cfg.Origin.DSN, 3)()
	total := settledCount(t, e.origin)
	waitFor(t, 60*time.Second, func() bool {
		return queryInt(t, e.replicas[0], "SELECT applied_events FROM pgreplica.position") >= total
	})
	stop()
	wg.Wait()
	// The engines sample the sequences now and then (an event when one
	// moved): apply what came after they stopped, then count.
	e.once()
	total = queryInt(t, e.origin, "SELECT count(*) FROM pgreplica.log")
	e.requireEqual(0, "accounts", "counter", "history")
	if applied := queryInt(t, e.replicas[0], "SELECT applied_events FROM pgreplica.position"); applied != total {
		t.Fatalf("applied %d events, captured %d", applied, total)
	}
}

// settledCount is the number of events in the log once it stops growing: a
// load transaction whose client gave up (its context ended) may still
// commit on the server a moment later.
func settledCount(t *testing.T, origin *pgx.Conn) int64 {
	t.Helper()
	n := queryInt(t, origin, "SELECT count(*) FROM pgreplica.log")
	for {
		time.Sleep(300 * time.Millisecond)
		m := queryInt(t, origin, "SELECT count(*) FROM pgreplica.log")
		if m == n {
			return n
		}
		n = m
	}
}
