package replay_test

import (
	"testing"
	"time"

	"pgreplica/core/replay"
)

// A batch that the replica rolls back for a deadlock (here with a local
// session; on a multi-master node, with another direction's apply) is
// applied again: replicate --once succeeds and the replica ends equal.
func TestDeadlockedBatchIsAppliedAgain(t *testing.T) {
	e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL)`, 1)
	e.mode = replay.ApplyExact // row by row, in the origin's order: y, then x
	exec(t, e.origin, `INSERT INTO acct VALUES (1, 0), (2, 0)`)
	e.once()
	exec(t, e.origin, `BEGIN; UPDATE acct SET n = 10 WHERE id = 2; UPDATE acct SET n = 10 WHERE id = 1; COMMIT`)

	// A replica session holds row 1 and, once the apply waits for it
	// (having taken row 2), asks for row 2: a deadlock, which the apply
	// session detects first (deadlock_timeout 1s against this one's 30s)
	// and so is the one rolled back.
	local := connect(t, e.cfg.Replicas[0].DSN)
	exec(t, local, `SET deadlock_timeout = '30s'`)
	exec(t, local, `BEGIN`)
	exec(t, local, `UPDATE acct SET n = -1 WHERE id = 1`)
	done := make(chan error, 1)
	go func() {
		_, err := e.engine().Once(e.ctx)
		done <- err
	}()
	watch := connect(t, e.cfg.Replicas[0].DSN)
	deadline := time.Now().Add(20 * time.Second)
	for queryInt(t, watch, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the apply never waited for the locked row")
		}
		time.Sleep(20 * time.Millisecond)
	}
	exec(t, local, `UPDATE acct SET n = -1 WHERE id = 2`) // waits until the apply is rolled back
	exec(t, local, `COMMIT`)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("replicate once after a deadlock: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replicate once did not finish")
	}
	e.requireEqual(0, "acct")
}
