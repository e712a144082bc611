package replay_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkApplyInsertBacklog measures the apply rate of a backlog of
// single-row inserts: go test -run XXX -bench ApplyInsertBacklog ./core/replay
func BenchmarkApplyInsertBacklog(b *testing.B) {
	benchmarkBacklog(b, "CREATE TABLE ins (id int PRIMARY KEY, v text, n int, at timestamptz)",
		func(e *env, n int) {
			exec(e.t, e.origin, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
			  INSERT INTO ins VALUES (i, 'value ' || i, i, now()); END LOOP; END $$`, n))
		}, 100000)
}

// BenchmarkApplyTPCBBacklog measures the apply rate of a TPC-B-like
// backlog (3 updates and an insert per transaction, hot branch rows).
func BenchmarkApplyTPCBBacklog(b *testing.B) {
	benchmarkBacklog(b, `
CREATE TABLE branches (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE history (hid bigserial PRIMARY KEY, tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO branches SELECT g, 0 FROM generate_series(1, 10) g;
INSERT INTO tellers SELECT g, (g - 1) / 10 + 1, 0 FROM generate_series(1, 100) g;
INSERT INTO accounts SELECT g, (g - 1) / 100000 + 1, 0 FROM generate_series(1, 100000) g;`,
		func(e *env, n int) {
			exec(e.t, e.origin, fmt.Sprintf(`DO $$ DECLARE a int; t int; b int; d int; BEGIN FOR i IN 1..%d LOOP
			  a := 1 + (random() * 99999)::int; t := 1 + (random() * 99)::int; b := 1 + (random() * 9)::int; d := (random() * 10000)::int - 5000;
			  UPDATE accounts SET abalance = abalance + d WHERE aid = a;
			  UPDATE tellers SET tbalance = tbalance + d WHERE tid = t;
			  UPDATE branches SET bbalance = bbalance + d WHERE bid = b;
			  INSERT INTO history (tid, bid, aid, delta, mtime) VALUES (t, b, a, d, now());
			END LOOP; END $$`, n))
		}, 25000)
}

func benchmarkBacklog(b *testing.B, schema string, write func(*env, int), n int) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, schema, 1)
		if n := os.Getenv("BENCH_BATCH"); n != "" {
			e.cfg.Batch.MaxEvents, _ = strconv.Atoi(n)
		}
		write(e, n)
		events := queryInt(e.t, e.origin, "SELECT count(*) FROM pgreplica.log")
		b.StartTimer()
		start := time.Now()
		got := e.once()
		d := time.Since(start)
		b.StopTimer()
		if int64(got) != events {
			b.Fatalf("applied %d of %d events", got, events)
		}
		b.ReportMetric(float64(events)/d.Seconds(), "events/s")
	}
}
