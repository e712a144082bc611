package replay_test

import (
	"context"
	"testing"
	"time"

	"pgreplica/core/replay"
)

// The engine commits its batches with synchronous_commit = off. The replica
// is stopped with pg_ctl -m immediate right after the last batches commit,
// so those commits, still in the replica's WAL buffers, are lost: the
// replica comes back at an older position. The origin must not have
// recorded a position beyond it (the engine tells it only positions the
// replica has flushed), so it purged nothing the replica still needs, and
// after catching up nothing is lost or applied twice.
func TestReplicaCrashAfterAsyncCommitsLosesNothing(t *testing.T) {
	p := shared.Get(t)
	if p.Replica.LogFile() == "" {
		t.Skip("needs clusters of its own (not external servers) to stop them")
	}
	e := newEnv(t, bankSchema, 1)
	exec(t, e.origin, "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g; INSERT INTO counter VALUES (1, 0)")
	e.once()
	ctx := e.ctx
	// The WAL writer flushes asynchronous commits every 10s (or after 1MB),
	// so the last ones of a burst stay in the WAL buffers for seconds.
	setWalWriterDelay := func(v string) {
		sql := "ALTER SYSTEM SET wal_writer_delay = '" + v + "'"
		if v == "" {
			sql = "ALTER SYSTEM RESET wal_writer_delay"
		}
		if err := p.Replica.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
		if err := p.Replica.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	setWalWriterDelay("10s")
	t.Cleanup(func() { setWalWriterDelay("") })

	e.cfg.PollInterval = 100 * time.Millisecond
	e.cfg.Purge.Interval = 100 * time.Millisecond
	engCtx, stopEngine := context.WithCancel(ctx)
	eng := e.engine()
	engDone := make(chan struct{})
	go func() { eng.Run(engCtx); close(engDone) }()
	defer func() { stopEngine(); <-engDone }()

	// A burst of load (its WAL reaches 1MB now and then: those positions
	// are flushed, recorded on the origin and purged below), applied.
	loadCtx, stopLoad := context.WithTimeout(ctx, 3*time.Second)
	defer stopLoad()
	committed := load(loadCtx, e.cfg.Origin.DSN, 3)()
	end := originSnapshot(t, e)
	waitFor(t, 60*time.Second, func() bool { return position(t, e, 0).Snapshot.Covers(end) })
	// Time to record the newest position on the origin, were it recorded
	// before its flush.
	time.Sleep(1500 * time.Millisecond)
	reached := eng.Status()[0].Position
	if err := p.Replica.StopServer(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	recorded := originRecorded(t, e)
	time.Sleep(300 * time.Millisecond) // the origin purges meanwhile
	if err := p.Replica.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	e.replicas[0] = connect(t, e.cfg.Replicas[0].DSN)
	after := position(t, e, 0)
	if after.AppliedEvents >= reached.AppliedEvents {
		t.Fatalf("the crash lost no asynchronous commit (applied events %d committed, %d after the restart): the test proves nothing",
			reached.AppliedEvents, after.AppliedEvents)
	}
	if !after.Snapshot.Covers(recorded) {
		t.Fatalf("the origin recorded position %s for the replica, beyond the %s it came back at: it may purge events the replica lost",
			recorded, after.Snapshot)
	}
	captured := queryInt(t, e.origin, "SELECT last_value FROM pgreplica.log_id_seq")
	if kept := queryInt(t, e.origin, "SELECT count(*) FROM pgreplica.log"); kept >= captured {
		t.Fatalf("nothing was purged (%d events kept of %d): the test proves nothing", kept, captured)
	}

	// The engine reconnects and applies again what the crash lost.
	waitFor(t, 60*time.Second, func() bool { return position(t, e, 0).Snapshot.Covers(end) })
	stopEngine()
	<-engDone
	e.requireEqual(0, "accounts", "counter", "history")
	n, h := queryInt(t, e.replicas[0], "SELECT n FROM counter"), queryInt(t, e.replicas[0], "SELECT count(*) FROM history")
	if n != h || n < committed {
		t.Fatalf("replica counter = %d, history rows = %d, transactions acknowledged = %d", n, h, committed)
	}
	if applied := position(t, e, 0).AppliedEvents; applied != captured {
		t.Fatalf("replica applied %d events, the origin captured %d", applied, captured)
	}
	if c := queryInt(t, e.replicas[0], "SELECT count(*) FROM pgreplica.conflict"); c != 0 {
		t.Fatalf("%d conflicts recorded", c)
	}
}

func position(t *testing.T, e *env, i int) replay.Position {
	t.Helper()
	pos, err := replay.ReadPosition(e.ctx, e.replicas[i], e.cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func originRecorded(t *testing.T, e *env) replay.Snapshot {
	t.Helper()
	var s replay.Snapshot
	if err := e.origin.QueryRow(e.ctx, "SELECT snapshot::text FROM pgreplica.replica WHERE name = $1", e.cfg.Replicas[0].Name).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func originSnapshot(t *testing.T, e *env) replay.Snapshot {
	t.Helper()
	var s replay.Snapshot
	if err := e.origin.QueryRow(e.ctx, "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
