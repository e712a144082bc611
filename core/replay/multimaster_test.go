package replay_test

import (
	"context"
	"fmt"
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
