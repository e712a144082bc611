package replay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"pgreplica/core/pg"
	"pgreplica/core/replay"
)

const simpleSchema = `
CREATE TABLE items (id int PRIMARY KEY, v text, n int DEFAULT 0);
CREATE TABLE notes (id int PRIMARY KEY, body text, extra text);`

// A transaction that writes first and commits last is not lost although
// batches are applied while it is open and later transactions commit
// before it (DESIGN.md invariant 2).
func TestCommitOrderLongTransactionNotLost(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	long := connect(t, e.cfg.Origin.DSN)
	exec(t, long, "BEGIN")
	exec(t, long, "INSERT INTO items VALUES (1, 'written first, committed last')")
	var longID int64
	if err := long.QueryRow(e.ctx, "SELECT max(id) FROM pgreplica.log").Scan(&longID); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 6; i++ {
		exec(t, e.origin, "INSERT INTO items VALUES ($1, 'short')", i)
		if n := e.once(); n != 1 {
			t.Fatalf("batch %d applied %d events, want 1", i, n)
		}
	}
	var later int64
	if err := e.origin.QueryRow(e.ctx, "SELECT min(id) FROM pgreplica.log WHERE data->>'v' = 'short'").Scan(&later); err != nil {
		t.Fatal(err)
	}
	if longID >= later {
		t.Fatalf("setup: the long transaction's event id %d should be below the later ones (%d)", longID, later)
	}
	if got := queryInt(t, e.replicas[0], "SELECT count(*) FROM items WHERE id = 1"); got != 0 {
		t.Fatal("an uncommitted row reached the replica")
	}
	exec(t, long, "COMMIT")
	if n := e.once(); n != 1 {
		t.Fatalf("after the long commit applied %d events, want 1", n)
	}
	e.requireEqual(0, "items")
}

func TestConflictUpdateOrDeleteWithoutRow(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	exec(t, e.origin, "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 3) g")
	e.once()
	exec(t, e.replicas[0], "DELETE FROM items WHERE id IN (1, 2)")
	exec(t, e.origin, "UPDATE items SET v = 'y' WHERE id = 1; DELETE FROM items WHERE id = 2; UPDATE items SET v = 'z' WHERE id = 3")

	var mu sync.Mutex
	var found []replay.Conflict
	eng := replay.New(e.cfg, testLogger(t), replay.Options{OnEvent: func(ev replay.Event) {
		if c, ok := ev.(replay.ConflictFound); ok {
			mu.Lock()
			found = append(found, c.Conflict)
			mu.Unlock()
		}
	}})
	if _, err := eng.Once(e.ctx); err != nil {
		t.Fatalf("conflicts must not stop the replica: %v", err)
	}
	if len(found) != 2 || found[0].Kind != replay.UpdateNoRow || found[0].Key != `{"id": 1}` ||
		found[1].Kind != replay.DeleteNoRow || found[1].Key != `{"id": 2}` {
		t.Fatalf("conflict events = %+v", found)
	}
	rows := rows(t, e.replicas[0], "(SELECT table_name, op, key, kind, event_id > 0 FROM pgreplica.conflict)")
	want := []string{`(items,D,"{""id"": 2}","delete: no row",t)`, `(items,U,"{""id"": 1}","update: no row",t)`}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Fatalf("pgreplica.conflict holds\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if got := rows2(t, e, "SELECT v FROM items WHERE id = 3"); got != "z" {
		t.Fatalf("the batch after the conflicts was not applied: v = %q", got)
	}
}

func rows2(t *testing.T, e *env, sql string) string {
	t.Helper()
	var s string
	if err := e.replicas[0].QueryRow(e.ctx, sql).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDuplicateInsertStopsReplicaWithPositionUnchanged(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	exec(t, e.replicas[0], "INSERT INTO items VALUES (7, 'replica only')")
	before, err := replay.ReadPosition(e.ctx, e.replicas[0], "test")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, e.origin, "INSERT INTO items VALUES (6, 'a'); INSERT INTO items VALUES (7, 'origin')")
	_, err = e.engine().Once(e.ctx)
	var id int64
	if qerr := e.origin.QueryRow(e.ctx, "SELECT id FROM pgreplica.log WHERE data->>'id' = '7'").Scan(&id); qerr != nil {
		t.Fatal(qerr)
	}
	want := fmt.Sprintf(`replica replica: INSERT into public.items (event %d): duplicate key value violates unique constraint "items_pkey" (Key (id)=(7) already exists); the replica has a row the origin had not: remove it there or resync the table`, id)
	if err == nil || err.Error() != want {
		t.Fatalf("error =\n%v\nwant\n%s", err, want)
	}
	if !replay.IsStop(err) {
		t.Fatal("a duplicate key must stop the replica, not be retried as a fault")
	}
	after, err := replay.ReadPosition(e.ctx, e.replicas[0], "test")
	if err != nil {
		t.Fatal(err)
	}
	if after.Snapshot.String() != before.Snapshot.String() || after.AppliedEvents != 0 {
		t.Fatalf("position moved: %v -> %v (%d applied)", before.Snapshot, after.Snapshot, after.AppliedEvents)
	}
	if got := queryInt(t, e.replicas[0], "SELECT count(*) FROM items WHERE id = 6"); got != 0 {
		t.Fatal("part of the failed batch was kept")
	}
	// The operator removes the row: replication resumes, nothing skipped.
	exec(t, e.replicas[0], "DELETE FROM items WHERE id = 7")
	if n := e.once(); n != 2 {
		t.Fatalf("after the fix applied %d events, want 2", n)
	}
	e.requireEqual(0, "items")
}

// A replica that lacks a column or a table the events need holds that
// table's events (only that table's stream stops), with the reason, until
// the operator fixed it and released it.
func TestReplicaMissingTableOrColumnStops(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	exec(t, e.replicas[0], "ALTER TABLE notes DROP COLUMN extra")
	exec(t, e.origin, "INSERT INTO notes VALUES (1, 'b', 'x')")
	id := queryInt(t, e.origin, "SELECT max(id) FROM pgreplica.log")
	e.once()
	want := fmt.Sprintf(`held: replica replica: table public.notes lacks column extra (event %d); its events are held there: add the column, then pgreplica retry --table public.notes (or pgreplica sync --table public.notes)`, id)
	if got := queryString(t, e.replicas[0], "SELECT state || ': ' || reason FROM pgreplica.table_state WHERE table_name = 'notes'"); got != want {
		t.Fatalf("notes on the replica: %s\nwant %s", got, want)
	}
	exec(t, e.replicas[0], "ALTER TABLE notes ADD COLUMN extra text")
	if ok, err := replay.RetryTable(e.ctx, e.cfg, e.cfg.Replicas[0], pg.Table{Schema: "public", Name: "notes"}); !ok || err != nil {
		t.Fatalf("retry --table: %v %v", ok, err)
	}
	e.once()
	e.requireEqual(0, "notes")

	exec(t, e.replicas[0], "DROP TABLE items")
	exec(t, e.origin, "INSERT INTO items VALUES (1, 'x')")
	id = queryInt(t, e.origin, "SELECT max(id) FROM pgreplica.log")
	e.once()
	want = fmt.Sprintf(`held: replica replica lacks table public.items (event %d); its events are held there: create it, then pgreplica retry --table public.items (or pgreplica sync --table public.items)`, id)
	if got := queryString(t, e.replicas[0], "SELECT state || ': ' || reason FROM pgreplica.table_state WHERE table_name = 'items'"); got != want {
		t.Fatalf("items on the replica: %s\nwant %s", got, want)
	}
}

// With the poll interval at a minute, a change arrives within a second
// only through LISTEN/NOTIFY.
func TestRunWakesOnNotify(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	e.cfg.PollInterval = time.Minute
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	eng := e.engine()
	go func() { done <- eng.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitState(t, eng, replay.Streaming)
	for i := 1; i <= 3; i++ {
		start := time.Now()
		exec(t, e.origin, "INSERT INTO items VALUES ($1, 'notify')", i)
		waitFor(t, 5*time.Second, func() bool {
			return queryInt(t, e.replicas[0], "SELECT count(*) FROM items WHERE id = $1", i) == 1
		})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("change %d took %v to arrive", i, d)
		}
	}
}

func waitState(t testing.TB, eng *replay.Engine, want replay.State) {
	t.Helper()
	waitFor(t, 30*time.Second, func() bool {
		for _, s := range eng.Status() {
			if s.State != want {
				return false
			}
		}
		return true
	})
}

func waitFor(t testing.TB, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two replicas from one origin: both end equal; one stopped for a while
// catches up; the log is purged only below the slower one.
func TestTwoReplicasAndPurgeBelowTheSlower(t *testing.T) {
	e := newEnv(t, simpleSchema, 2)
	const n = 120000 // more than one log block, so a whole table empties
	exec(t, e.origin, fmt.Sprintf("INSERT INTO items SELECT g, 'v' FROM generate_series(1, %d) g", n))

	onlyFirst := *e.cfg
	onlyFirst.Replicas = e.cfg.Replicas[:1]
	if _, err := replay.New(&onlyFirst, testLogger(t), replay.Options{}).Once(e.ctx); err != nil {
		t.Fatal(err)
	}
	res, err := replay.PurgeNow(e.ctx, e.cfg, func(name string, err error) { t.Errorf("%s: %v", name, err) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Truncated+res.Deleted != 0 || res.Kept != n {
		t.Fatalf("purge with replica2 behind removed %d+%d events, kept %d; want 0 removed, %d kept",
			res.Truncated, res.Deleted, res.Kept, n)
	}
	if got := queryInt(t, e.replicas[1], "SELECT count(*) FROM items"); got != 0 {
		t.Fatalf("replica2 has %d rows before catching up", got)
	}

	if n2 := e.once(); n2 != n {
		t.Fatalf("replica2 caught up with %d events, want %d", n2, n)
	}
	e.requireEqual(0, "items")
	e.requireEqual(1, "items")
	res, err = replay.PurgeNow(e.ctx, e.cfg, func(name string, err error) { t.Errorf("%s: %v", name, err) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Truncated < 99999 || res.Truncated+res.Deleted != n || res.Kept != 0 {
		t.Fatalf("purge after both caught up: truncated %d, deleted %d, kept %d", res.Truncated, res.Deleted, res.Kept)
	}
	if got := queryInt(t, e.origin, "SELECT count(*) FROM pgreplica.log"); got != 0 {
		t.Fatalf("%d events left in the log", got)
	}
	// Replication goes on after a purge.
	exec(t, e.origin, "UPDATE items SET v = 'after purge' WHERE id = 5")
	e.once()
	e.requireEqual(0, "items")
	e.requireEqual(1, "items")
}

// A replica whose position is missing stops with a clear error.
func TestNoPositionIsAClearError(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	exec(t, e.replicas[0], "DELETE FROM pgreplica.position")
	_, err := e.engine().Once(e.ctx)
	if err == nil || err.Error() != "replica replica: no position recorded; run pgreplica install (or sync) first" {
		t.Fatalf("error = %v", err)
	}
	if !errors.Is(err, replay.ErrNoPosition) {
		t.Fatal("error does not wrap ErrNoPosition")
	}
}
