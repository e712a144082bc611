package replay_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/replay"
)

// mmEnv is a multi-master set of nodes with the same schema, installed.
type mmEnv struct {
	t     testing.TB
	ctx   context.Context
	cfg   *config.Config
	names []string
	conns []*pgx.Conn
}

const mmSchema = `
CREATE TABLE t (id int PRIMARY KEY, v text, n int);
CREATE TABLE tally (n bigint NOT NULL);`

// newMM makes a set of n nodes: the first in the origin cluster, the others
// in the replica cluster (another time zone).
func newMM(t testing.TB, n int, schema string) *mmEnv {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	a, b := p.DBs(t)
	dsns := []string{a, b}
	for len(dsns) < n {
		db, err := p.Replica.CreateDB(ctx, "node")
		if err != nil {
			t.Fatal(err)
		}
		dsns = append(dsns, p.Replica.DSN(db))
	}
	cfg := config.Default()
	cfg.Name = "mm"
	cfg.Purge.Interval = 0
	cfg.Tables.Exclude = []string{"public.tally"}
	m := &mmEnv{t: t, ctx: ctx, cfg: &cfg}
	for i, d := range dsns {
		name := string(rune('a' + i))
		cfg.Nodes = append(cfg.Nodes, config.Node{Name: name, DSN: d})
		m.names = append(m.names, name)
		c := connect(t, d)
		exec(t, c, schema)
		m.conns = append(m.conns, c)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := capture.Install(ctx, &cfg, func(string) {}); err != nil {
		t.Fatalf("install: %v", err)
	}
	return m
}

// randomWrites makes about ops random single-row INSERT, UPDATE and DELETE
// on t with ids id % mod = rem, in transactions of 250 on the server (no
// round trip per write), and records in tally how many rows they changed.
func randomWrites(t testing.TB, c *pgx.Conn, ops, mod, rem int) {
	t.Helper()
	for done := 0; done < ops; done += 250 {
		exec(t, c, fmt.Sprintf(`DO $$
DECLARE
    changed bigint := 0;
    rc bigint;
    k int;
BEGIN
    FOR i IN 1..250 LOOP
        k := (floor(random() * 300)::int) * %[1]d + %[2]d;
        CASE floor(random() * 3)::int
        WHEN 0 THEN INSERT INTO t VALUES (k, md5(random()::text), i) ON CONFLICT (id) DO NOTHING;
        WHEN 1 THEN UPDATE t SET v = md5(random()::text), n = n + 1 WHERE id = k;
        ELSE DELETE FROM t WHERE id = k;
        END CASE;
        GET DIAGNOSTICS rc = ROW_COUNT;
        changed := changed + rc;
    END LOOP;
    INSERT INTO tally VALUES (changed);
END $$`, mod, rem))
	}
}

func scalar(t testing.TB, c *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// Echo: two nodes written at once (10,000 random writes each, on keys of
// their own) while one engine drives both directions, stopped and started
// again half way. Nothing echoes: each node's log holds exactly its own
// writes; and the table ends equal on both.
func TestMultiMasterEcho(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	eng := replay.New(m.cfg, testLogger(t), replay.Options{})
	var names []string
	for _, s := range eng.Status() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "a->b b->a" {
		t.Fatalf("directions = %q, want \"a->b b->a\"", got)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(m.ctx)
		done := make(chan struct{})
		go func() { defer close(done); replay.New(m.cfg, testLogger(t), replay.Options{}).Run(ctx) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	var wg sync.WaitGroup
	for i, c := range m.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			randomWrites(t, c, 5000, 2, i)
		}()
	}
	wg.Wait()
	stop()
	stop = run()
	for i, c := range m.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			randomWrites(t, c, 5000, 2, i)
		}()
	}
	wg.Wait()
	stop()
	if _, err := eng.Once(m.ctx); err != nil {
		t.Fatalf("replicate once: %v", err)
	}
	a, b := rows(t, m.conns[0], "t"), rows(t, m.conns[1], "t")
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("t differs: node a has %d rows, node b %d", len(a), len(b))
	}
	if len(a) < 100 {
		t.Fatalf("only %d rows: the writes did not happen", len(a))
	}
	for i, c := range m.conns {
		own := scalar(t, c, "SELECT sum(n)::text FROM tally")
		logged := scalar(t, c, "SELECT count(*)::text FROM pgreplica.log WHERE op IN ('I', 'U', 'D')")
		if own != logged {
			t.Errorf("node %s changed %s rows and its log holds %s row events", m.names[i], own, logged)
		}
		foreign := scalar(t, c, fmt.Sprintf(`SELECT count(*)::text FROM pgreplica.log
		                                     WHERE op IN ('I', 'U', 'D') AND (origin IS NOT NULL OR coalesce(key, data)->>'id' IS NULL OR (coalesce(key, data)->>'id')::int %% 2 <> %d)`, i))
		if foreign != "0" {
			t.Errorf("node %s's log holds %s events it did not write", m.names[i], foreign)
		}
		if n := scalar(t, c, "SELECT count(*)::text FROM pgreplica.conflict"); n != "0" {
			t.Errorf("node %s recorded %s conflicts: the nodes wrote different keys", m.names[i], n)
		}
		// The other node's stream has a position here, applied to the end.
		other := m.names[1-i]
		if n := scalar(t, c, fmt.Sprintf("SELECT count(*)::text FROM pgreplica.position WHERE set_name = 'mm__%s' AND applied_events > 0", other)); n != "1" {
			t.Errorf("node %s has no applied position for %s's stream", m.names[i], other)
		}
	}
}

// A daemon per node: Options.Node drives only the directions into it.
func TestMultiMasterEngineIntoOneNode(t *testing.T) {
	m := newMM(t, 3, mmSchema)
	var names []string
	for _, s := range replay.New(m.cfg, testLogger(t), replay.Options{Node: "b"}).Status() {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "a->b c->b" {
		t.Fatalf("directions into b = %q, want \"a->b c->b\"", got)
	}
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'from a', 0)")
	exec(t, m.conns[2], "INSERT INTO t VALUES (3, 'from c', 0)")
	if _, err := replay.New(m.cfg, testLogger(t), replay.Options{Node: "b"}).Once(m.ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows(t, m.conns[1], "t"), " "); got != "(1,\"from a\",0) (3,\"from c\",0)" {
		t.Fatalf("node b has %s", got)
	}
	for _, i := range []int{0, 2} {
		if n := len(rows(t, m.conns[i], "t")); n != 1 {
			t.Fatalf("node %s has %d rows: only b was to be applied", m.names[i], n)
		}
	}
	// And the whole set: every node ends with both rows.
	if _, err := replay.New(m.cfg, testLogger(t), replay.Options{}).Once(m.ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range m.conns {
		if n := len(rows(t, c, "t")); n != 2 {
			t.Fatalf("node %s has %d rows, want 2", m.names[i], n)
		}
	}
}

// into applies the pending changes of node from into node to only.
func (m *mmEnv) into(from, to string) {
	m.t.Helper()
	for _, d := range m.cfg.Directions(to) {
		if d.Source == from {
			if _, err := replay.New(d, testLogger(m.t), replay.Options{}).Once(m.ctx); err != nil {
				m.t.Fatalf("apply %s into %s: %v", from, to, err)
			}
			return
		}
	}
	m.t.Fatalf("no direction %s->%s", from, to)
}

// all applies everything pending, in every direction, until nothing moves.
func (m *mmEnv) all() {
	m.t.Helper()
	for i := 0; i < 3; i++ {
		if _, err := replay.New(m.cfg, testLogger(m.t), replay.Options{}).Once(m.ctx); err != nil {
			m.t.Fatalf("replicate once: %v", err)
		}
	}
}

func (m *mmEnv) row(i int, table string, id int) string {
	m.t.Helper()
	var s string
	err := m.conns[i].QueryRow(m.ctx, fmt.Sprintf("SELECT coalesce((SELECT format('%%s', x) FROM %s x WHERE id = $1), 'none')", table), id).Scan(&s)
	if err != nil {
		m.t.Fatal(err)
	}
	return s
}

// ledger is what node i recorded of conflicts on key id: kind and the
// winning version's node, per conflict, in order.
func (m *mmEnv) ledger(i int, table string, id int) []string {
	m.t.Helper()
	rows, err := m.conns[i].Query(m.ctx, `SELECT kind || ' ' || outcome || ' won by ' || (winner->>'n') FROM pgreplica.conflict
	                                       WHERE table_name = $1 AND key->>'id' = $2 ORDER BY id`, table, fmt.Sprint(id))
	if err != nil {
		m.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// Order independence: for each policy and each kind of conflict, two
// concurrent changes (on nodes a and b) give the same row on every node,
// whichever reached it first: c gets a's first, d gets b's first. The
// winner is the later write under latest (table t) and a, first in the
// priority list, under priority (table tp, by a per-table override); every
// node that met the conflict records the same winner; a change that
// leaves the row as it already is, is no conflict. Each case has a key
// of its own.
func TestMultiMasterOrderIndependence(t *testing.T) {
	cases := []struct {
		name     string
		setup    string // on a, replicated everywhere first
		onA, onB string
		latest   string // the row under latest (b writes last)
		priority string // under priority (a first)
		kindA    string // what a and c record (b's change meets a's), "" for none
		kindB    string // what b and d record (a's change meets b's)
	}{
		{"update vs update", "INSERT INTO %[1]s VALUES (%[2]d, 'base', 0)", "UPDATE %[1]s SET v = 'a' WHERE id = %[2]d", "UPDATE %[1]s SET n = 7 WHERE id = %[2]d",
			`(%d,base,7)`, `(%d,a,0)`, "update_origin_differs", "update_origin_differs"},
		{"insert vs insert", "", "INSERT INTO %[1]s VALUES (%[2]d, 'a', 1)", "INSERT INTO %[1]s VALUES (%[2]d, 'b', 2)",
			`(%d,b,2)`, `(%d,a,1)`, "insert_exists", "insert_exists"},
		{"update vs delete", "INSERT INTO %[1]s VALUES (%[2]d, 'base', 0)", "UPDATE %[1]s SET v = 'a' WHERE id = %[2]d", "DELETE FROM %[1]s WHERE id = %[2]d",
			`none`, `(%d,a,0)`, "delete_origin_differs", "update_missing"},
		{"delete vs update", "INSERT INTO %[1]s VALUES (%[2]d, 'base', 0)", "DELETE FROM %[1]s WHERE id = %[2]d", "UPDATE %[1]s SET v = 'b' WHERE id = %[2]d",
			`(%d,b,0)`, `none`, "update_missing", "delete_origin_differs"},
		{"same change on both", "INSERT INTO %[1]s VALUES (%[2]d, 'base', 0)", "UPDATE %[1]s SET v = 'same' WHERE id = %[2]d", "UPDATE %[1]s SET v = 'same' WHERE id = %[2]d",
			`(%d,same,0)`, `(%d,same,0)`, "", ""},
		{"delete vs delete", "INSERT INTO %[1]s VALUES (%[2]d, 'base', 0)", "DELETE FROM %[1]s WHERE id = %[2]d", "DELETE FROM %[1]s WHERE id = %[2]d",
			`none`, `none`, "", ""},
	}
	m := newMM(t, 4, mmSchema+"CREATE TABLE tp (id int PRIMARY KEY, v text, n int);")
	m.cfg.Conflicts.Tables = map[string]string{"public.tp": "priority"}
	tables := []string{"t", "tp"}
	run := func(stmt func(int) string, node int) {
		for ti, tb := range tables {
			for ci := range cases {
				if q := stmt(ci); q != "" {
					exec(t, m.conns[node], fmt.Sprintf(q, tb, ci+1))
				}
				_ = ti
			}
		}
	}
	run(func(i int) string { return cases[i].setup }, 0)
	m.all()
	run(func(i int) string { return cases[i].onA }, 0)
	run(func(i int) string { return cases[i].onB }, 1)
	m.into("a", "c")
	m.into("b", "c")
	m.into("b", "d")
	m.into("a", "d")
	m.all()
	for _, tb := range tables {
		winner := map[string]string{"t": "b", "tp": "a"}[tb]
		for ci, c := range cases {
			id := ci + 1
			want := c.latest
			if tb == "tp" {
				want = c.priority
			}
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, id)
			}
			for i := range m.conns {
				if got := m.row(i, tb, id); got != want {
					t.Errorf("%s %s: node %s ends with %s, want %s", tb, c.name, m.names[i], got, want)
				}
			}
			for i, kind := range []string{c.kindA, c.kindB, c.kindA, c.kindB} {
				got := strings.Join(m.ledger(i, tb, id), "; ")
				switch {
				case kind == "" && got != "":
					t.Errorf("%s %s: node %s recorded %q, want no conflict", tb, c.name, m.names[i], got)
				case kind != "" && (!strings.HasPrefix(got, kind+" ") || !strings.HasSuffix(got, " won by "+winner) || strings.Contains(got, ";")):
					t.Errorf("%s %s: node %s recorded %q, want one %s won by %s", tb, c.name, m.names[i], got, kind, winner)
				}
			}
		}
	}
}

// Clock skew: node a's clock runs 2 s ahead. b changes the row after it
// has seen a's change: b's change is the newer (its version's clock is a's
// + 1 µs, not b's own clock) and wins everywhere under latest.
func TestMultiMasterClockSkew(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	exec(t, m.conns[0], "SET pgreplica.test_clock_skew = '2s'")
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'a, 2 s ahead', 0)")
	m.all()
	exec(t, m.conns[1], "UPDATE t SET v = 'b, after seeing a' WHERE id = 1")
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 1); got != `(1,"b, after seeing a",0)` {
			t.Errorf("node %s ends with %s", m.names[i], got)
		}
	}
	// Versions: b's clock is past a's skewed one, a tick later.
	if got := scalar(t, m.conns[1], `SELECT (clock > (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text || ' ' || gen || ' ' || node
	                                   FROM pgreplica.row_version`); got != "true 2 b" {
		t.Errorf("row version on b = %s, want a clock ahead of b's, gen 2, node b", got)
	}
	if got, want := scalar(t, m.conns[0], "SELECT clock || ' ' || gen || ' ' || node FROM pgreplica.row_version"),
		scalar(t, m.conns[1], "SELECT clock || ' ' || gen || ' ' || node FROM pgreplica.row_version"); got != want {
		t.Errorf("versions differ: a %s, b %s", got, want)
	}
	// And a concurrent pair where a's skewed clock makes a's the newer.
	exec(t, m.conns[1], "UPDATE t SET v = 'b again' WHERE id = 1")
	exec(t, m.conns[0], "UPDATE t SET v = 'a, skewed' WHERE id = 1")
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 1); got != `(1,"a, skewed",0)` {
			t.Errorf("node %s ends with %s, want a's (its clock is 2 s ahead)", m.names[i], got)
		}
	}
}

// Policy error: a conflict stops the direction with a message naming it,
// the position unchanged; with the policy changed, the same events apply.
func TestMultiMasterPolicyError(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	m.cfg.Conflicts.Policy = "error"
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'base', 0)")
	m.all()
	before := scalar(t, m.conns[1], "SELECT snapshot || ' ' || applied_events FROM pgreplica.position WHERE set_name = 'mm__a'")
	exec(t, m.conns[0], "UPDATE t SET v = 'a' WHERE id = 1")
	exec(t, m.conns[1], "UPDATE t SET v = 'b' WHERE id = 1")
	_, err := replay.New(m.cfg, testLogger(t), replay.Options{}).Once(m.ctx)
	if err == nil || !strings.Contains(err.Error(), "pgreplica: conflict update_origin_differs: update of public.t {\"id\": 1} by node a meets node b's version; policy error stops this direction") ||
		!strings.Contains(err.Error(), "conflict update_origin_differs: update of public.t {\"id\": 1} by node b meets node a's version") {
		t.Fatalf("once = %v, want both directions stopped on the conflict", err)
	}
	if !replay.IsStop(err) || !strings.Contains(err.Error(), "SQLSTATE RP014") {
		t.Errorf("the error is not one the operator must fix: %v", err)
	}
	if after := scalar(t, m.conns[1], "SELECT snapshot || ' ' || applied_events FROM pgreplica.position WHERE set_name = 'mm__a'"); after != before {
		t.Errorf("position moved from %s to %s", before, after)
	}
	if got := m.row(1, "t", 1); got != "(1,b,0)" {
		t.Errorf("node b has %s: something was applied", got)
	}
	m.cfg.Conflicts.Policy = "latest"
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 1); got != "(1,b,0)" {
			t.Errorf("node %s ends with %s, want b's (the later)", m.names[i], got)
		}
	}
}

// hotWrites makes n small transactions of random INSERT, UPDATE and
// DELETE on keys 1..20 of t.
func hotWrites(t testing.TB, c *pgx.Conn, n int, who string) {
	t.Helper()
	for i := 0; i < n; i++ {
		execMayDeadlock(t, c, fmt.Sprintf(`DO $$
BEGIN
    FOR i IN 1..3 LOOP
        CASE floor(random() * 3)::int
        WHEN 0 THEN INSERT INTO t VALUES (1 + floor(random() * 20)::int, '%[1]s', i) ON CONFLICT (id) DO NOTHING;
        WHEN 1 THEN UPDATE t SET v = '%[1]s' || ' ' || md5(random()::text), n = n + 1 WHERE id = 1 + floor(random() * 20)::int;
        ELSE DELETE FROM t WHERE id = 1 + floor(random() * 20)::int;
        END CASE;
    END LOOP;
END $$`, who))
	}
}

// pairs is node i's ledger as the conflicts it met, each as its two
// versions (in a fixed order) and the winner.
func (m *mmEnv) pairs(i int) map[string]string {
	m.t.Helper()
	rows, err := m.conns[i].Query(m.ctx, `SELECT least(local_version::text, remote_version::text) || ' ' || greatest(local_version::text, remote_version::text),
	                                              winner::text FROM pgreplica.conflict`)
	if err != nil {
		m.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var p, w string
		if err := rows.Scan(&p, &w); err != nil {
			m.t.Fatal(err)
		}
		out[p] = w
	}
	return out
}

// Convergence: every node writes the same 20 hot keys at once while one
// engine drives every direction, stopped and started again several times;
// after quiescence every pair of nodes is equal (rows and row versions),
// and every conflict was resolved with the same winner on every node that
// met it. For each policy that
// resolves (latest, priority) with 2 nodes, and latest with 3.
func TestMultiMasterConvergence(t *testing.T) {
	for _, c := range []struct {
		nodes  int
		policy string
	}{{2, "latest"}, {2, "priority"}, {3, "latest"}} {
		t.Run(fmt.Sprintf("%d nodes %s", c.nodes, c.policy), func(t *testing.T) {
			m := newMM(t, c.nodes, mmSchema)
			m.cfg.Conflicts.Policy = c.policy
			for round := 0; round < 2; round++ {
				ctx, cancel := context.WithCancel(m.ctx)
				done := make(chan struct{})
				go func() { defer close(done); replay.New(m.cfg, testLogger(t), replay.Options{}).Run(ctx) }()
				var wg sync.WaitGroup
				for i, conn := range m.conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						hotWrites(t, conn, 30, m.names[i])
					}()
				}
				wg.Wait()
				cancel() // the engine stops mid-stream
				<-done
			}
			m.all()
			ref := rows(t, m.conns[0], "t")
			for i := 1; i < len(m.conns); i++ {
				if got := rows(t, m.conns[i], "t"); strings.Join(got, "\n") != strings.Join(ref, "\n") {
					t.Fatalf("node %s differs from a:\n%s\nvs\n%s", m.names[i], strings.Join(got, "\n"), strings.Join(ref, "\n"))
				}
				if got, want := scalar(t, m.conns[i], "SELECT string_agg(key::text || ' ' || clock::text || ' ' || gen::text || ' ' || node || ' ' || deleted::text, ',' ORDER BY key) FROM pgreplica.row_version"),
					scalar(t, m.conns[0], "SELECT string_agg(key::text || ' ' || clock::text || ' ' || gen::text || ' ' || node || ' ' || deleted::text, ',' ORDER BY key) FROM pgreplica.row_version"); got != want {
					t.Fatalf("node %s's row versions differ from a's:\n%s\nvs\n%s", m.names[i], strings.ReplaceAll(got, ",{", "\n{"), strings.ReplaceAll(want, ",{", "\n{"))
				}
			}
			// The same conflict has the same winner on every node that met it.
			winners := map[string]string{}
			total := 0
			for i := range m.conns {
				for p, w := range m.pairs(i) {
					total++
					if prev, ok := winners[p]; ok && prev != w {
						t.Errorf("conflict %s won by %s on one node, %s on node %s", p, prev, w, m.names[i])
					}
					winners[p] = w
				}
			}
			if total == 0 {
				t.Fatalf("no conflict at all: the test did not make any")
			}
			// Every node met conflicts (which pairs of versions each meets
			// depends on what it had when the other's change came).
			for i := range m.conns {
				if len(m.pairs(i)) == 0 {
					t.Errorf("node %s recorded no conflict", m.names[i])
				}
			}
			t.Logf("%d rows, %d conflicts recorded", len(ref), total)
		})
	}
}

// execMayDeadlock is exec where a deadlock with another writer (or the
// engine) is an application's ordinary failure: that transaction is lost.
func execMayDeadlock(t testing.TB, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql); err != nil && !strings.Contains(err.Error(), "SQLSTATE 40P01") {
		t.Fatalf("%s: %v", firstLine(sql), err)
	}
}

// The conflict ledger summarises large values and is purged with the log:
// entries older than conflicts.retention go, newer ones stay.
func TestMultiMasterLedgerRetention(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'a', 0), (2, repeat('a', 5000), 0)")
	exec(t, m.conns[1], "INSERT INTO t VALUES (1, 'b', 0), (2, 'b', 0)")
	m.all()
	// A large value is summarised in the ledger, not copied.
	if got := scalar(t, m.conns[1], "SELECT data->>'v' FROM pgreplica.conflict WHERE key->>'id' = '2'"); got != "<5002 bytes, md5 "+
		scalar(t, m.conns[1], "SELECT md5(to_jsonb(repeat('a', 5000))::text)")+">" {
		t.Errorf("node b's ledger holds the remote value as %.40q", got)
	}
	for i := range m.conns {
		if n := scalar(t, m.conns[i], "SELECT count(*)::text FROM pgreplica.conflict"); n != "2" {
			t.Fatalf("node %s recorded %s conflicts, want 2", m.names[i], n)
		}
		exec(t, m.conns[i], "UPDATE pgreplica.conflict SET detected_at = now() - interval '8 days' WHERE key->>'id' = '1'")
	}
	m.cfg.Purge.Interval = time.Second
	m.cfg.Conflicts.Retention = 7 * 24 * time.Hour
	ctx, cancel := context.WithTimeout(m.ctx, 1500*time.Millisecond)
	defer cancel()
	replay.New(m.cfg, testLogger(t), replay.Options{}).Run(ctx)
	for i := range m.conns {
		if got := scalar(t, m.conns[i], "SELECT string_agg(key->>'id', ',') FROM pgreplica.conflict"); got != "2" {
			t.Errorf("node %s keeps conflicts on keys %s, want only 2's", m.names[i], got)
		}
	}
}

// One-way drift (conflicts.detect_drift): a local UPDATE on the replica,
// then an origin UPDATE of the same row, is recorded as
// update_origin_differs (and applied: the replica follows its origin); no
// report when both made the same change, nor for an UPDATE of a row the
// replica left alone, nor for a table not opted in.
func TestOneWayDriftIsReported(t *testing.T) {
	e := newEnv(t, "CREATE TABLE t (id int PRIMARY KEY, v text, j json); CREATE TABLE other (id int PRIMARY KEY, v text)", 1)
	e.cfg.Conflicts.DetectDrift = []string{"public.t"}
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		t.Fatal(err)
	}
	exec(t, e.origin, `INSERT INTO t VALUES (1, 'x', '{"a": 1}'), (2, 'x', null), (3, 'x', null); INSERT INTO other VALUES (1, 'x')`)
	e.once()
	exec(t, e.replicas[0], `UPDATE t SET v = 'local' WHERE id = 1; UPDATE t SET v = 'same' WHERE id = 2; UPDATE other SET v = 'local'`)
	exec(t, e.origin, `UPDATE t SET v = 'origin' WHERE id = 1; UPDATE t SET v = 'same' WHERE id = 2; UPDATE t SET v = 'origin' WHERE id = 3;
	                   UPDATE other SET v = 'origin'; UPDATE t SET j = '{"a":  2}' WHERE id = 1`)
	e.once()
	got := scalar(t, e.replicas[0], "SELECT coalesce(string_agg(table_name || ' ' || kind || ' ' || key::text || ' ' || data::text, '; ' ORDER BY id), '') FROM pgreplica.conflict")
	if want := `t update_origin_differs {"id": 1} {"v": "origin"}`; got != want {
		t.Fatalf("conflicts: %s\nwant %s", got, want)
	}
	e.requireEqual(0, "t", "other")
}

// policyLedger is what node i recorded of conflicts on key id of table:
// kind, the policy used, outcome and the winning version's node.
func (m *mmEnv) policyLedger(i int, table string, id int) string {
	m.t.Helper()
	rows, err := m.conns[i].Query(m.ctx, `SELECT kind || ' ' || policy || ' ' || outcome || ' won by ' || (winner->>'n') FROM pgreplica.conflict
	                                       WHERE table_name = $1 AND key->>'id' = $2 ORDER BY id`, table, fmt.Sprint(id))
	if err != nil {
		m.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		m.t.Fatal(err)
	}
	return strings.Join(out, "; ")
}

// Per-kind override to error: under set policy latest with
// kinds {insert_exists: error}, a concurrent UPDATE pair still resolves by
// latest, and a concurrent INSERT pair stops both directions, naming the
// kind, their positions unchanged.
func TestMultiMasterKindError(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	m.cfg.Conflicts.Policy = "latest"
	m.cfg.Conflicts.Kinds = map[string]string{"insert_exists": "error"}
	if err := m.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	exec(t, m.conns[0], "INSERT INTO t VALUES (2, 'base', 0)")
	m.all()
	exec(t, m.conns[0], "UPDATE t SET v = 'a' WHERE id = 2")
	exec(t, m.conns[1], "UPDATE t SET v = 'b' WHERE id = 2")
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 2); got != "(2,b,0)" {
			t.Errorf("node %s ends with %s, want b's (the later, by latest)", m.names[i], got)
		}
		if got := m.policyLedger(i, "t", 2); got != "update_origin_differs latest "+map[int]string{0: "applied", 1: "kept"}[i]+" won by b" {
			t.Errorf("node %s recorded %q", m.names[i], got)
		}
	}

	pos := func(i int, set string) string {
		return scalar(t, m.conns[i], "SELECT snapshot || ' ' || applied_events FROM pgreplica.position WHERE set_name = '"+set+"'")
	}
	beforeA, beforeB := pos(1, "mm__a"), pos(0, "mm__b")
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'a', 1)")
	exec(t, m.conns[1], "INSERT INTO t VALUES (1, 'b', 2)")
	_, err := replay.New(m.cfg, testLogger(t), replay.Options{}).Once(m.ctx)
	if err == nil || !strings.Contains(err.Error(), `pgreplica: conflict insert_exists: insert of public.t {"id": 1} by node a meets node b's version; policy error stops this direction`) ||
		!strings.Contains(err.Error(), `pgreplica: conflict insert_exists: insert of public.t {"id": 1} by node b meets node a's version; policy error stops this direction`) {
		t.Fatalf("once = %v, want both directions stopped on insert_exists", err)
	}
	if !replay.IsStop(err) || !strings.Contains(err.Error(), "SQLSTATE RP014") {
		t.Errorf("the error is not one the operator must fix: %v", err)
	}
	if a, b := pos(1, "mm__a"), pos(0, "mm__b"); a != beforeA || b != beforeB {
		t.Errorf("positions moved: a->b %s to %s, b->a %s to %s", beforeA, a, beforeB, b)
	}
	if got, want := m.row(0, "t", 1)+" "+m.row(1, "t", 1), "(1,a,1) (1,b,2)"; got != want {
		t.Errorf("rows %s, want each node's own: %s", got, want)
	}
	delete(m.cfg.Conflicts.Kinds, "insert_exists") // the set's latest again
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 1); got != "(1,b,2)" {
			t.Errorf("node %s ends with %s, want b's (the later)", m.names[i], got)
		}
	}
}

// Per-kind override to priority: under set policy latest, and over a
// table's policy error, kinds {update_origin_differs: priority} makes a
// (first in priority) win a concurrent UPDATE pair though b's write is
// the newer, on both nodes, and both ledgers record priority and a.
func TestMultiMasterKindPriority(t *testing.T) {
	m := newMM(t, 2, mmSchema+"CREATE TABLE te (id int PRIMARY KEY, v text, n int);")
	m.cfg.Conflicts.Policy = "latest"
	m.cfg.Conflicts.Tables = map[string]string{"public.te": "error"}
	m.cfg.Conflicts.Kinds = map[string]string{"update_origin_differs": "priority"}
	if err := m.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"t", "te"} {
		exec(t, m.conns[0], "INSERT INTO "+tb+" VALUES (1, 'base', 0)")
	}
	m.all()
	for _, tb := range []string{"t", "te"} {
		exec(t, m.conns[0], "UPDATE "+tb+" SET v = 'a' WHERE id = 1")
	}
	time.Sleep(2 * time.Millisecond) // b's write is the newer by clock
	for _, tb := range []string{"t", "te"} {
		exec(t, m.conns[1], "UPDATE "+tb+" SET v = 'b' WHERE id = 1")
	}
	m.all()
	for _, tb := range []string{"t", "te"} {
		for i := range m.conns {
			if got := m.row(i, tb, 1); got != "(1,a,0)" {
				t.Errorf("%s: node %s ends with %s, want a's (first in priority)", tb, m.names[i], got)
			}
			if got, want := m.policyLedger(i, tb, 1), "update_origin_differs priority "+map[int]string{0: "kept", 1: "applied"}[i]+" won by a"; got != want {
				t.Errorf("%s: node %s recorded %q, want %q", tb, m.names[i], got, want)
			}
		}
	}
	if got, want := scalar(t, m.conns[0], "SELECT clock || ' ' || gen || ' ' || node FROM pgreplica.row_version WHERE relid = 'public.t'::regclass"),
		scalar(t, m.conns[1], "SELECT clock || ' ' || gen || ' ' || node FROM pgreplica.row_version WHERE relid = 'public.t'::regclass"); got != want {
		t.Errorf("versions differ: a %s, b %s", got, want)
	}
	// b's version was the newer: the override, not the clock, chose a.
	if got := scalar(t, m.conns[1], `SELECT ((remote_version->>'c')::bigint < (local_version->>'c')::bigint)::text FROM pgreplica.conflict WHERE table_name = 't'`); got != "true" {
		t.Errorf("a's version newer than b's: %s; the test proves nothing", got)
	}

	// The apply function has one signature: the one before kinds is
	// dropped when mm_refresh replaces it.
	c := m.conns[0]
	exec(t, c, `DO $$ DECLARE fn text := 'pgreplica.mm_apply_' || 'public.t'::regclass::oid; BEGIN
	  EXECUTE format('DROP FUNCTION %s("char",jsonb,jsonb,jsonb,text,jsonb,text[],text,bigint,text)', fn);
	  EXECUTE format('CREATE FUNCTION %s(op "char", k jsonb, d jsonb, meta jsonb, policy text, ranks text[], set_name text, event_id bigint, txid text) RETURNS text LANGUAGE sql AS $b$ SELECT '''' $b$', fn);
	END $$`)
	exec(t, c, "SELECT pgreplica.mm_refresh('public.t')")
	if got := scalar(t, c, `SELECT string_agg(oid::regprocedure::text, ', ') FROM pg_proc WHERE proname = 'mm_apply_' || 'public.t'::regclass::oid`); !strings.HasSuffix(got, `("char",jsonb,jsonb,jsonb,text,jsonb,text[],text,bigint,text)`) || strings.Contains(got, ", ") {
		t.Errorf("apply functions of t: %s, want the one with kinds", got)
	}
}

// An INSERT that finds another deletion than the one it followed met a
// concurrent DELETE: a deleted and re-inserted the row while b deleted
// it, later by clock. a meets b's delete as delete_origin_differs; b
// meets a's insert over its own tombstone, no kind of its own, and must
// resolve it by the same policy (the override priority, not the set's
// latest, under which b's later delete would win on b only).
func TestMultiMasterKindInsertOverTombstone(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	m.cfg.Conflicts.Policy = "latest"
	m.cfg.Conflicts.Kinds = map[string]string{"update_missing": "priority", "delete_origin_differs": "priority"}
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'base', 0)")
	m.all()
	exec(t, m.conns[0], "DELETE FROM t WHERE id = 1")
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'a again', 1)")
	time.Sleep(2 * time.Millisecond)
	exec(t, m.conns[1], "DELETE FROM t WHERE id = 1")
	m.all()
	for i := range m.conns {
		if got := m.row(i, "t", 1); got != `(1,"a again",1)` {
			t.Errorf("node %s ends with %s, want a's insert (it saw more writes: priority counts them)", m.names[i], got)
		}
	}
	if got := m.policyLedger(0, "t", 1); got != "delete_origin_differs priority kept won by a" {
		t.Errorf("node a recorded %q", got)
	}
	if got, want := scalar(t, m.conns[0], "SELECT clock || ' ' || gen || ' ' || node || ' ' || deleted FROM pgreplica.row_version"),
		scalar(t, m.conns[1], "SELECT clock || ' ' || gen || ' ' || node || ' ' || deleted FROM pgreplica.row_version"); got != want {
		t.Errorf("versions differ: a %s, b %s", got, want)
	}
}

// A conflict met on a multi-master node is reported like a one-way one (a
// ConflictFound event: the log line, the alerts and the status count) with
// its kind, and recorded once in that node's ledger (by the apply function
// only).
func TestMultiMasterConflictIsReported(t *testing.T) {
	m := newMM(t, 2, mmSchema)
	exec(t, m.conns[0], "INSERT INTO t VALUES (1, 'first', 0)")
	m.all()
	exec(t, m.conns[0], "UPDATE t SET v = 'a' WHERE id = 1")
	exec(t, m.conns[1], "UPDATE t SET v = 'b' WHERE id = 1")
	var mu sync.Mutex
	found := map[string][]string{}
	eng := replay.New(m.cfg, testLogger(t), replay.Options{OnEvent: func(ev replay.Event) {
		if c, ok := ev.(replay.ConflictFound); ok {
			mu.Lock()
			found[c.Replica] = append(found[c.Replica], c.Conflict.Kind+" "+c.Conflict.Table.String()+" "+c.Conflict.Key)
			mu.Unlock()
		}
	}})
	if _, err := eng.Once(m.ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{`update_origin_differs public.t {"id": 1}`}
	for _, dir := range []string{"a->b", "b->a"} {
		if got := found[dir]; !slices.Equal(got, want) {
			t.Errorf("conflicts reported on %s: %q, want %q", dir, got, want)
		}
	}
	for i := range m.conns {
		if n := queryInt(t, m.conns[i], "SELECT count(*) FROM pgreplica.conflict"); n != 1 {
			t.Errorf("node %s ledger holds %d entries, want 1", m.names[i], n)
		}
	}
	if a, b := m.row(0, "t", 1), m.row(1, "t", 1); a != b {
		t.Errorf("nodes differ: a %s, b %s", a, b)
	}
}
