package replay_test

import (
	"fmt"
	"strings"
	"testing"

	"pgreplica/core/replay"
)

// Every way changes to one row fold within a batch, with key changes and
// TRUNCATE as barriers, applied set-based (fast mode never falls back).
func TestFoldedBatchesEndEqual(t *testing.T) {
	e := newEnv(t, `
CREATE TABLE acc (id int PRIMARY KEY, bal int, note text, other text);
CREATE TABLE "Hist ""x""" (id bigserial PRIMARY KEY, acc int, delta int);
CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b));`, 1)
	e.mode = replay.ApplyFast
	exec(t, e.origin, `INSERT INTO acc SELECT g, 0, 'n' FROM generate_series(1, 20) g; INSERT INTO pair VALUES (1, 'x', 0), (2, 'y', 0)`)
	e.once()
	exec(t, e.origin, `
INSERT INTO acc VALUES (100, 1, 'new');            -- insert + updates -> one insert
UPDATE acc SET bal = bal + 1 WHERE id = 100;
UPDATE acc SET note = 'changed' WHERE id = 100;
INSERT INTO acc VALUES (101, 1, 'gone');           -- insert + delete -> nothing
DELETE FROM acc WHERE id = 101;
UPDATE acc SET bal = bal + 5 WHERE id = 1;         -- updates -> one update of both columns
UPDATE acc SET note = 'x' WHERE id = 1;
UPDATE acc SET bal = bal + 5 WHERE id = 1;
UPDATE acc SET bal = 9 WHERE id = 2;               -- update + delete -> delete
DELETE FROM acc WHERE id = 2;
DELETE FROM acc WHERE id = 3;                      -- delete + insert -> replace
INSERT INTO acc VALUES (3, 33, 'reborn');
DELETE FROM acc WHERE id = 4;                      -- delete + insert + update -> replace
INSERT INTO acc VALUES (4, 44, 'reborn');
UPDATE acc SET other = 'o' WHERE id = 4;
UPDATE acc SET id = 200 WHERE id = 5;              -- key change: a barrier
UPDATE acc SET bal = 7 WHERE id = 200;
UPDATE pair SET b = 'x2', v = 1 WHERE a = 1;       -- composite key change
UPDATE pair SET v = 2 WHERE a = 2;
INSERT INTO "Hist ""x""" (acc, delta) SELECT g % 20, g FROM generate_series(1, 50) g;
UPDATE acc SET bal = bal - 1 WHERE id BETWEEN 6 AND 20;`)
	e.once()
	e.requireEqual(0, "acc", `"Hist ""x"""`, "pair")

	exec(t, e.origin, `BEGIN; UPDATE acc SET bal = 0 WHERE id = 6; TRUNCATE acc; INSERT INTO acc VALUES (1, 1, 'after'); UPDATE acc SET bal = 2 WHERE id = 1; COMMIT`)
	e.once()
	e.requireEqual(0, "acc")
}

func TestFoldedBatchReportsConflicts(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	e.mode = replay.ApplyFast
	exec(t, e.origin, "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 30) g")
	e.once()
	exec(t, e.replicas[0], "DELETE FROM items WHERE id IN (3, 4)")
	exec(t, e.origin, "UPDATE items SET v = 'y' WHERE id <= 10; DELETE FROM items WHERE id = 4")
	e.once()
	got := rows(t, e.replicas[0], "(SELECT op, key, kind FROM pgreplica.conflict)")
	want := []string{`(D,"{""id"": 4}","delete: no row")`, `(U,"{""id"": 3}","update: no row")`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("conflicts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// In auto mode a big batch that fails set-based is replayed event by event,
// so the error still names the exact event and nothing is applied.
func TestAutoModeFallsBackToNameTheFailingEvent(t *testing.T) {
	e := newEnv(t, simpleSchema, 1)
	exec(t, e.replicas[0], "INSERT INTO items VALUES (77, 'replica only')")
	exec(t, e.origin, "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 100) g")
	id := queryInt(t, e.origin, "SELECT id FROM pgreplica.log WHERE data->>'id' = '77'")
	_, err := e.engine().Once(e.ctx)
	want := fmt.Sprintf(`replica replica: INSERT into public.items (event %d): duplicate key value violates unique constraint "items_pkey" (Key (id)=(77) already exists); the replica has a row the origin had not: remove it there or resync the table`, id)
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant\n%s", err, want)
	}
	if n := queryInt(t, e.replicas[0], "SELECT count(*) FROM items"); n != 1 {
		t.Fatalf("the failed batch left %d rows", n)
	}
	exec(t, e.replicas[0], "DELETE FROM items")
	e.once()
	e.requireEqual(0, "items")
}
