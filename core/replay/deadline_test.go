package replay_test

import (
	"testing"
	"time"
)

// A batch that takes longer than dead_path on the replica (here a trigger
// that sleeps 4s, dead_path 2s) is not taken for a dead path: the server
// is working on it, so the wait goes on and the batch is applied.
func TestSlowApplyIsNotCutShort(t *testing.T) {
	e := newEnv(t, "CREATE TABLE t (id int PRIMARY KEY)", 1)
	e.cfg.Timeouts.DeadPath = 2 * time.Second
	exec(t, e.replicas[0], `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(4); RETURN NEW; END$$;
CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow();
ALTER TABLE t ENABLE ALWAYS TRIGGER slow;`)
	exec(t, e.origin, "INSERT INTO t VALUES (1)")
	start := time.Now()
	if n := e.once(); n != 1 {
		t.Fatalf("applied %d events, want 1", n)
	}
	if took := time.Since(start); took < 4*time.Second {
		t.Fatalf("applied in %v: the slow trigger did not run", took)
	}
	e.requireEqual(0, "t")
}
