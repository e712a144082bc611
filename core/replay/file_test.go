package replay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/replay"
)

// TestFileReplicaIsSkippedAndHoldsThePurge: with a file replica in the
// config, the engine replicates to the others and leaves it out; install
// registers it on the origin, so the purge keeps every event it has not
// acknowledged; status reports it from the origin alone.
func TestFileReplicaIsSkippedAndHoldsThePurge(t *testing.T) {
	e := newEnv(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, 1)
	e.cfg.Replicas = append(e.cfg.Replicas, config.Replica{Name: "dmz", File: true})
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		t.Fatalf("install with a file replica: %v", err)
	}
	exec(t, e.origin, `INSERT INTO t SELECT g, 'v' FROM generate_series(1, 25) g`)
	if n := e.once(); n != 25 {
		t.Fatalf("applied %d events, want 25", n)
	}
	e.requireEqual(0, "t")

	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	eng := replay.New(e.cfg, testLogger(t), replay.Options{})
	if st := eng.Status(); len(st) != 1 || st[0].Name != "replica" {
		t.Fatalf("engine workers: %+v", st)
	}
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	exec(t, e.origin, `UPDATE t SET v = 'w' WHERE id <= 5`)
	deadline := time.Now().Add(8 * time.Second)
	for queryInt(t, e.replicas[0], `SELECT count(*) FROM t WHERE v = 'w'`) != 5 {
		if time.Now().After(deadline) {
			t.Fatal("the engine did not apply the update to the network replica")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	res, err := replay.PurgeNow(e.ctx, e.cfg, func(name string, err error) { t.Fatalf("purge: %s: %v", name, err) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Truncated+res.Deleted != 0 || res.Kept != 30 {
		t.Fatalf("purge with an unacknowledged file replica: %+v, want nothing removed and 30 kept", res)
	}

	rep, err := replay.QueryStatus(e.ctx, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Replicas) != 2 {
		t.Fatalf("status: %+v", rep.Replicas)
	}
	f := rep.Replicas[1]
	if f.Name != "dmz" || f.File == nil || f.Error != "" || f.Pending != 30 || f.File.Unexported != 30 || f.File.LastBundle != 0 {
		t.Fatalf("file replica status: %+v %+v", f, f.File)
	}
	if r := rep.Replicas[0]; r.Pending != 0 || r.File != nil {
		t.Fatalf("network replica status: %+v", r)
	}

	// Verify compares the network replica only; named, the file replica
	// cannot be reached.
	_, err = replay.ConnectReplica(e.ctx, e.cfg, e.cfg.Replicas[1], "verify")
	if err == nil || !strings.Contains(err.Error(), "replica dmz: no dsn to connect to (a file replica is fed by bundle files") {
		t.Fatalf("connect to a file replica: %v", err)
	}
}
