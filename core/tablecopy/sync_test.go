package tablecopy_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/tablecopy"
	"pgreplica/core/verify"
)

const oddTable = `"Odd Schema"."Order ""Items"""`

var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

// progressLog collects progress reports.
type progressLog struct {
	mu   sync.Mutex
	all  []tablecopy.Progress
	done map[pg.Table]tablecopy.Progress
}

func (p *progressLog) add(x tablecopy.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = append(p.all, x)
	if x.Done {
		if p.done == nil {
			p.done = map[pg.Table]tablecopy.Progress{}
		}
		p.done[x.Table] = x
	}
}

func TestSyncSchemaKindsToEmptyReplica(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, kindsSchema)
	exec(t, e.origin, kindsRows(300))
	var lines []string
	var prog progressLog
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Schema: true, Report: func(l string) { lines = append(lines, l) }}, prog.add)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	t.Logf("report:\n%s", strings.Join(lines, "\n"))
	e.once()
	e.requireEqual("kinds", "composite_key", oddTable)
	if len(prog.done) != 3 {
		t.Fatalf("done reports for %d tables, want 3", len(prog.done))
	}
	if d := prog.done[pg.Table{Schema: "public", Name: "kinds"}]; d.Rows != 300 {
		t.Fatalf("kinds: reported %d rows, want 300", d.Rows)
	}
	// The replica's generated column is computed there, the sequence follows the origin.
	if g := queryInt(t, e.replica, "SELECT sum(g) FROM kinds"); g != queryInt(t, e.origin, "SELECT sum(id * 10) FROM kinds") {
		t.Fatalf("generated column sum %d", g)
	}
	if v := queryInt(t, e.replica, "SELECT last_value FROM kinds_ser_seq"); v != 300 {
		t.Fatalf("replica's kinds_ser_seq at %d, want 300", v)
	}
}

// A populated origin (pgbench scale 5 and the awkward kinds) is copied with
// --schema to an empty replica while a write load runs on the origin for
// the whole copy; then the engine catches up and the replica equals the
// origin, by verify and row by row.
func TestSyncPgbenchUnderLoad(t *testing.T) {
	e := newEnv(t)
	e.pgbenchInit(5)
	exec(t, e.origin, kindsSchema)
	exec(t, e.origin, kindsRows(300))
	l := startLoad(t, e.originDSN, 4, 1_000_000, true)
	var before atomic.Int64
	var prog progressLog
	start := time.Now()
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Schema: true, Workers: 3}, func(p tablecopy.Progress) {
		if before.Load() == 0 {
			before.Store(l.txns.Load() + 1)
		}
		prog.add(p)
	})
	if err != nil {
		l.stop(t)
		t.Fatalf("sync: %v", err)
	}
	during := l.txns.Load() - (before.Load() - 1)
	took := time.Since(start)
	time.Sleep(200 * time.Millisecond) // a little load after the copy too
	total := l.stop(t)
	t.Logf("sync took %v; %d load transactions during the copy, %d in all", took, during, total)
	if during < 20 {
		t.Fatalf("only %d load transactions ran during the copy", during)
	}
	for _, tb := range append(pgbenchTables, "kinds") {
		if st := queryString(t, e.replica, "SELECT state FROM pgreplica.table_state WHERE table_name = $1", tb); st != "catchup" {
			t.Fatalf("%s is %q after the copy, want catchup", tb, st)
		}
	}
	// The engine has the events of the whole load to sort out: those the
	// copy saw and those it did not.
	if n := queryInt(t, e.origin, "SELECT count(*) FROM pgreplica.log"); n < during {
		t.Fatalf("only %d events in the origin's log", n)
	}
	acc := prog.done[pg.Table{Schema: "public", Name: "pgbench_accounts"}]
	if acc.Rows != 500000 || acc.Bytes == 0 || acc.TotalRows != 500000 {
		t.Fatalf("pgbench_accounts progress: %+v", acc)
	}
	e.once()
	if n := queryInt(t, e.replica, "SELECT count(*) FROM pgreplica.table_state WHERE state <> 'replicating'"); n != 0 {
		t.Fatalf("%d tables not replicating after catching up", n)
	}
	e.requireVerifyEqual()
	e.requireEqual(append(pgbenchTables, "kinds", "composite_key", oddTable)...)
}

func (e *env) requireVerifyEqual() {
	e.t.Helper()
	res, err := verify.Run(e.ctx, e.cfg, verify.Options{})
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	for _, rr := range res.Replicas {
		for _, tr := range rr.Tables {
			if !tr.Equal {
				e.t.Errorf("verify: %s differs: %d/%d rows, missing %v, extra %v, different %v, %s", tr.Table,
					tr.OriginRows, tr.ReplicaRows, tr.Missing, tr.Extra, tr.Different, tr.Skipped)
			}
		}
	}
	if !res.Equal {
		e.t.FailNow()
	}
}

// A table is added to a replication that runs (engine Run) under load: it
// is copied online, joins the stream and ends equal, and the other tables'
// changes keep being applied on the replica during the copy.
func TestAddTableWhileReplicating(t *testing.T) {
	e := newEnv(t)
	const setup = `
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
CREATE TABLE big (id bigint PRIMARY KEY, grp int NOT NULL, payload text);
CREATE INDEX big_grp ON big (grp);`
	exec(t, e.origin, setup)
	exec(t, e.replica, "CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counter VALUES (1, 0)")
	exec(t, e.origin, `INSERT INTO big SELECT g, g % 100, repeat(md5(g::text), 6) FROM generate_series(1, 400000) g`)
	// Only counter is replicated at first.
	e.cfg.Tables.Include = []string{"public.counter"}
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		t.Fatal(err)
	}
	runCtx, stopEngine := context.WithCancel(e.ctx)
	var engine sync.WaitGroup
	var stopped atomic.Bool
	engine.Go(func() {
		_ = replay.New(e.cfg, testLogger(), replay.Options{OnEvent: func(ev replay.Event) {
			if sc, ok := ev.(replay.StateChanged); ok && (sc.To == replay.Stopped || sc.To == replay.Retrying) {
				stopped.Store(true)
			}
		}}).Run(runCtx)
	})
	defer func() { stopEngine(); engine.Wait() }()

	// Load: the counter and big change all the time.
	loadCtx, stopLoad := context.WithCancel(e.ctx)
	var loaders sync.WaitGroup
	var loadErr atomic.Value
	for i := range 2 {
		c := connect(t, e.originDSN)
		loaders.Go(func() {
			for n := 0; loadCtx.Err() == nil && n < 200000; n++ {
				id := int64((n*7919+i*104729)%400000 + 1)
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				b.Queue("UPDATE counter SET n = n + 1 WHERE id = 1")
				switch n % 3 {
				case 0:
					b.Queue("UPDATE big SET payload = payload || 'u', grp = grp + 1 WHERE id = $1", id)
				case 1:
					b.Queue("DELETE FROM big WHERE id = $1", id)
				default:
					b.Queue("INSERT INTO big VALUES ($1, 7, 'new') ON CONFLICT (id) DO UPDATE SET payload = 'again'", id+400000)
				}
				b.Queue("COMMIT")
				if err := c.SendBatch(loadCtx, b).Close(); err != nil {
					if loadCtx.Err() == nil {
						loadErr.Store(err)
					}
					return
				}
			}
		})
	}
	waitFor(t, "the counter to replicate", func() bool {
		return queryInt(t, e.replica, "SELECT n FROM counter") > 0
	})

	// Sample the replica's counter while the copy runs.
	var mu sync.Mutex
	var copyStart, copyEnd time.Time
	type sample struct {
		at time.Time
		n  int64
	}
	var samples []sample
	sampler := connect(t, e.replicaDSN)
	samplerCtx, stopSampler := context.WithCancel(e.ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() {
		for samplerCtx.Err() == nil {
			var n int64
			if err := sampler.QueryRow(samplerCtx, "SELECT n FROM counter").Scan(&n); err == nil {
				mu.Lock()
				samples = append(samples, sample{time.Now(), n})
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	big := pg.Table{Schema: "public", Name: "big"}
	var lines []string
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Tables: []pg.Table{big}, Schema: true,
		Report: func(l string) { lines = append(lines, l) }}, func(p tablecopy.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if copyStart.IsZero() {
			copyStart = time.Now()
		}
		if p.Done {
			copyEnd = time.Now()
		}
	})
	stopSampler()
	sampling.Wait()
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	t.Logf("report:\n%s", strings.Join(lines, "\n"))
	var during []int64
	for _, s := range samples {
		if s.at.After(copyStart) && s.at.Before(copyEnd) && (len(during) == 0 || s.n > during[len(during)-1]) {
			during = append(during, s.n)
		}
	}
	t.Logf("copy took %v; the replica's counter took %d values during it: %v", copyEnd.Sub(copyStart), len(during), during)
	if len(during) < 3 {
		t.Fatalf("the counter advanced only through %v on the replica while big was copied", during)
	}
	waitFor(t, "big to replicate", func() bool {
		return queryString(t, e.replica, "SELECT coalesce((SELECT state FROM pgreplica.table_state WHERE table_name = 'big'), '')") == "replicating"
	})
	time.Sleep(300 * time.Millisecond) // load goes on after the hand-over
	stopLoad()
	loaders.Wait()
	if err, _ := loadErr.Load().(error); err != nil {
		t.Fatalf("load: %v", err)
	}
	stopEngine()
	engine.Wait()
	if stopped.Load() {
		t.Fatal("the engine stopped or retried during the test")
	}
	e.once()
	e.cfg.Tables.Include = []string{"public.counter", "public.big"}
	e.requireVerifyEqual()
	e.requireEqual("counter", "big")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --schema stops with a clear error on a type it cannot create, and
// creates nothing on the replica.
func TestSyncSchemaUncreatableType(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, `
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE a (id int PRIMARY KEY, m mood);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE spans (id int PRIMARY KEY, r floatrange);`)
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Schema: true}, nil)
	want := "replica replica: cannot create public.spans: type public.floatrange does not exist there; create it first"
	if err == nil || err.Error() != want {
		t.Fatalf("got error %v\nwant %s", err, want)
	}
	if n := queryInt(t, e.replica, "SELECT count(*) FROM pg_class WHERE relname IN ('a', 'spans') OR relname LIKE 'pgreplica%'"); n != 0 {
		t.Fatalf("%d objects created on the replica", n)
	}
	if n := queryInt(t, e.replica, "SELECT count(*) FROM pg_type WHERE typname = 'mood'"); n != 0 {
		t.Fatal("type mood was created although the sync failed")
	}
	if n := queryInt(t, e.origin, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgreplica'"); n != 0 {
		t.Fatal("capture was installed although the sync failed")
	}
}
