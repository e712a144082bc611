package replay_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"pgreplica/core/replay"
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

// BenchmarkLag measures commit-to-visible lag at a steady rate: rows stamped
// with clock_timestamp() on the origin, arrival stamped by an ENABLE ALWAYS
// trigger on the replica (same machine, same clock). Reports p50/p99 in ms.
func BenchmarkLag(b *testing.B) {
	e := newEnv(b, "CREATE TABLE probe (id bigint PRIMARY KEY, t0 timestamptz NOT NULL)", 1)
	exec(b, e.replicas[0], `
CREATE TABLE arrival (id bigint PRIMARY KEY, lag_ms float8);
CREATE FUNCTION record_arrival() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO arrival VALUES (NEW.id, extract(epoch FROM clock_timestamp() - NEW.t0) * 1000); RETURN NULL; END $$;
CREATE TRIGGER arrival AFTER INSERT ON probe FOR EACH ROW EXECUTE FUNCTION record_arrival();
ALTER TABLE probe ENABLE ALWAYS TRIGGER arrival;`)
	ctx, cancel := context.WithCancel(e.ctx)
	eng := e.engine()
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	waitState(b, eng, replay.Streaming)
	rate := 200
	if s := os.Getenv("BENCH_RATE"); s != "" {
		rate, _ = strconv.Atoi(s)
	}
	n := rate * 5
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := 1; i <= n; i++ {
		<-tick.C
		exec(b, e.origin, "INSERT INTO probe VALUES ($1, clock_timestamp())", i)
	}
	tick.Stop()
	waitFor(b, 30*time.Second, func() bool { return queryInt(b, e.replicas[0], "SELECT count(*) FROM arrival") == int64(n) })
	b.StopTimer()
	cancel()
	<-done
	var p50, p95, p99 float64
	if err := e.replicas[0].QueryRow(e.ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms),
	    percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) FROM arrival`).Scan(&p50, &p95, &p99); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p95, "p95-ms")
	b.ReportMetric(p99, "p99-ms")
}
