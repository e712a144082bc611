package verify_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/pgtest"
	"pgreplica/core/replay"
	"pgreplica/core/verify"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

// The shared test helpers (core/pgtest), under this package's short names.
var (
	connect = pgtest.Connect
	exec    = pgtest.Exec
)

const schema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (id int PRIMARY KEY, v text, n numeric, f float8, ts timestamptz, m mood, j jsonb, b bytea);
CREATE TABLE "Pair Keys" ("Region" text, "nr" bigint, payload text, PRIMARY KEY ("Region", "nr"));
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
`

const fill = `
INSERT INTO items SELECT g, 'v' || g, g / 7.0, CASE WHEN g % 100 = 0 THEN 'NaN' ELSE 1.0 / g END,
       '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second', (ARRAY['sad','ok','happy'])[1 + g % 3]::mood,
       jsonb_build_object('g', g), decode(md5(g::text), 'hex')
  FROM generate_series(1, 60000) g;
INSERT INTO "Pair Keys" SELECT (ARRAY['Nord', 'süd', 'Ost', 'west', 'Zürich', 'a b'])[1 + g % 6], g, repeat('p', g % 50)
  FROM generate_series(1, 20000) g;
INSERT INTO counter VALUES (1, 0);
`

type env struct {
	t               *testing.T
	ctx             context.Context
	cfg             *config.Config
	origin, replica *pgx.Conn
	originDSN       string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	o, r := p.DBs(t)
	cfg, err := config.FromFlags("test", o, []string{r})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Purge.Interval = 0
	cfg.PollInterval = 100 * time.Millisecond
	e := &env{t: t, ctx: ctx, cfg: cfg, origin: connect(t, o), replica: connect(t, r), originDSN: o}
	// The same deterministic rows on both sides, then capture from there.
	for _, c := range []*pgx.Conn{e.origin, e.replica} {
		exec(t, c, schema)
		exec(t, c, fill)
	}
	if err := capture.Install(ctx, cfg, func(string) {}); err != nil {
		t.Fatalf("install: %v", err)
	}
	return e
}

func (e *env) once() {
	e.t.Helper()
	if _, err := replay.New(e.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), replay.Options{}).Once(e.ctx); err != nil {
		e.t.Fatalf("replicate once: %v", err)
	}
}

func (e *env) verify(opt verify.Options) verify.Result {
	e.t.Helper()
	res, err := verify.Run(e.ctx, e.cfg, opt)
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	return res
}

func table(name string) pg.Table { return pg.Table{Schema: "public", Name: name} }

func find(t *testing.T, res verify.Result, tb pg.Table) verify.TableResult {
	t.Helper()
	if len(res.Replicas) != 1 {
		t.Fatalf("%d replicas in the result", len(res.Replicas))
	}
	for _, tr := range res.Replicas[0].Tables {
		if tr.Table == tb {
			return tr
		}
	}
	t.Fatalf("no result for %s", tb)
	return verify.TableResult{}
}

func keys(ks []verify.Key) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, " ")
}

// rows is the independent comparison: every row's text, sorted.
func rows(t *testing.T, c *pgx.Conn, tb string) string {
	return strings.Join(pgtest.TableRows(t, c, tb), "\n")
}

func TestVerifyFindsAndRepairsPlantedDifferences(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(fmt.Sprintf("portable_hash=%v", portable), func(t *testing.T) { testPlanted(t, portable) })
	}
}

func testPlanted(t *testing.T, portable bool) {
	e := newEnv(t)
	res := e.verify(verify.Options{PortableHash: portable})
	if !res.Equal {
		t.Fatalf("freshly replicated tables differ: %+v", res)
	}
	if tr := find(t, res, table("items")); tr.OriginRows != 60000 || tr.ReplicaRows != 60000 {
		t.Fatalf("items: %d origin rows, %d replica rows", tr.OriginRows, tr.ReplicaRows)
	}

	// Plant a deleted row, an extra row and a changed value, deep inside
	// the key ranges, and a changed value in the two-column text key table.
	exec(t, e.replica, `DELETE FROM items WHERE id = 31337`)
	exec(t, e.replica, `INSERT INTO items (id, v) VALUES (60001, 'stray')`)
	exec(t, e.replica, `UPDATE items SET n = n + 0.000001 WHERE id = 4711`)
	exec(t, e.replica, `UPDATE "Pair Keys" SET payload = payload || '!' WHERE "Region" = 'süd' AND nr = 12343`)

	// Small leaves and fanout make the search go several levels deep.
	opt := verify.Options{LeafRows: 50, Fanout: 4, PortableHash: portable}
	res = e.verify(opt)
	if res.Equal || res.Resolved() {
		t.Fatal("verify found no difference")
	}
	items := find(t, res, table("items"))
	if got := keys(items.Missing); got != "(id)=(31337)" {
		t.Errorf("missing: %s", got)
	}
	if got := keys(items.Extra); got != "(id)=(60001)" {
		t.Errorf("extra: %s", got)
	}
	if got := keys(items.Different); got != "(id)=(4711)" {
		t.Errorf("different: %s", got)
	}
	if items.OriginRows != 60000 || items.ReplicaRows != 60000 || items.MissingCount != 1 || items.ExtraCount != 1 || items.DifferentCount != 1 {
		t.Errorf("items counts: %+v", items)
	}
	if items.Missing[0].JSON != `{"id": 31337}` {
		t.Errorf("missing key as JSON: %s", items.Missing[0].JSON)
	}
	pairs := find(t, res, table("Pair Keys"))
	if got := keys(pairs.Different); got != "(Region, nr)=(süd, 12343)" || len(pairs.Missing)+len(pairs.Extra) != 0 {
		t.Errorf("Pair Keys: different %s, missing %d, extra %d", got, len(pairs.Missing), len(pairs.Extra))
	}
	if c := find(t, res, table("counter")); !c.Equal {
		t.Errorf("counter differs: %+v", c)
	}

	// Repair changes exactly those rows.
	opt.Repair = true
	res = e.verify(opt)
	items = find(t, res, table("items"))
	if items.Repaired == nil || *items.Repaired != (verify.Repaired{Deleted: 1, Inserted: 1, Updated: 1}) {
		t.Fatalf("items repaired: %+v", items.Repaired)
	}
	if p := find(t, res, table("Pair Keys")); p.Repaired == nil || *p.Repaired != (verify.Repaired{Updated: 1}) {
		t.Fatalf("Pair Keys repaired: %+v", p.Repaired)
	}
	if !res.Resolved() {
		t.Fatal("not resolved after repair")
	}
	if res = e.verify(verify.Options{PortableHash: portable}); !res.Equal {
		t.Fatalf("differences after repair: %+v", res)
	}
	for _, tb := range []string{"items", `"Pair Keys"`} {
		if o, r := rows(t, e.origin, tb), rows(t, e.replica, tb); o != r {
			t.Fatalf("%s differs row by row after repair", tb)
		}
	}
}

func TestVerifyListsAtMostMaxKeys(t *testing.T) {
	e := newEnv(t)
	exec(t, e.replica, `DELETE FROM items WHERE id % 10 = 0`) // 6000 missing
	exec(t, e.replica, `DELETE FROM "Pair Keys"`)             // all missing: one-sided
	exec(t, e.replica, `UPDATE counter SET n = 42`)           // different
	res := e.verify(verify.Options{MaxKeys: 100})
	items := find(t, res, table("items"))
	if !items.Truncated || len(items.Missing) < 100 || items.MissingCount < int64(len(items.Missing)) {
		t.Errorf("items: truncated %v, %d listed, count %d", items.Truncated, len(items.Missing), items.MissingCount)
	}
	if items.Missing[0].String() != "(id)=(10)" {
		t.Errorf("first missing key %s, want (id)=(10)", items.Missing[0])
	}
	pairs := find(t, res, table("Pair Keys"))
	if !pairs.Truncated || len(pairs.Missing) != 100 || pairs.MissingCount != 20000 || pairs.ReplicaRows != 0 {
		t.Errorf("Pair Keys: truncated %v, %d listed, count %d", pairs.Truncated, len(pairs.Missing), pairs.MissingCount)
	}
	// A repair refuses what it cannot list, and fixes the rest.
	res = e.verify(verify.Options{MaxKeys: 100, Repair: true})
	if tr := find(t, res, table("items")); tr.Repaired != nil {
		t.Errorf("items repaired although truncated: %+v", tr.Repaired)
	}
	if tr := find(t, res, table("counter")); tr.Repaired == nil || tr.Repaired.Updated != 1 {
		t.Errorf("counter not repaired: %+v", tr.Repaired)
	}
	if res.Resolved() {
		t.Error("resolved although items were not repaired")
	}
}

func TestVerifySkipsTablesBeingCopied(t *testing.T) {
	e := newEnv(t)
	exec(t, e.replica, `INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state) VALUES ('test', 'public', 'items', 'copying')`)
	res := e.verify(verify.Options{Tables: []pg.Table{table("items"), table("counter")}})
	items := find(t, res, table("items"))
	if items.Equal || !strings.Contains(items.Skipped, "state copying") {
		t.Fatalf("items: %+v", items)
	}
	if res.Equal || !find(t, res, table("counter")).Equal {
		t.Fatal("want counter equal, the whole not equal")
	}
	_, err := verify.Run(e.ctx, e.cfg, verify.Options{Tables: []pg.Table{table("nope")}})
	if err == nil || err.Error() != "origin has no table public.nope" {
		t.Fatalf("unknown table: %v", err)
	}
}

// While the origin takes writes and the engine runs, verify compares at
// an aligned point and finds the replica equal every time.
func TestVerifyUnderLoadIsEqual(t *testing.T) {
	e := newEnv(t)
	runCtx, stopEngine := context.WithCancel(e.ctx)
	var engineDone sync.WaitGroup
	engineDone.Go(func() {
		_ = replay.New(e.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), replay.Options{}).Run(runCtx)
	})
	loadCtx, stopLoad := context.WithCancel(e.ctx)
	var txns atomic.Int64
	var wg sync.WaitGroup
	for i := range 3 {
		c := connect(t, e.originDSN)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for loadCtx.Err() == nil && txns.Load() < 20000 {
				id := rng.IntN(60000) + 1
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				b.Queue("UPDATE items SET n = n + 1, f = f * 2, ts = now() WHERE id = $1", id)
				b.Queue("UPDATE counter SET n = n + 1 WHERE id = 1")
				b.Queue(`INSERT INTO "Pair Keys" VALUES ('load', $1, 'x') ON CONFLICT ("Region", nr) DO UPDATE SET payload = "Pair Keys".payload || 'y'`, id%500)
				if id%3 == 0 {
					b.Queue("DELETE FROM items WHERE id = $1", id+1)
				}
				b.Queue("COMMIT")
				if err := c.SendBatch(loadCtx, b).Close(); err != nil {
					return
				}
				txns.Add(1)
			}
		})
	}
	for round := range 3 {
		time.Sleep(300 * time.Millisecond)
		res := e.verify(verify.Options{LeafRows: 100})
		for _, tr := range res.Replicas[0].Tables {
			if !tr.Equal {
				t.Fatalf("round %d: %s differs under load: missing %s extra %s different %s", round, tr.Table,
					keys(tr.Missing), keys(tr.Extra), keys(tr.Different))
			}
		}
	}
	stopLoad()
	wg.Wait()
	stopEngine()
	engineDone.Wait()
	if txns.Load() < 50 {
		t.Fatalf("only %d transactions of load", txns.Load())
	}
	t.Logf("%d transactions during verify", txns.Load())
}
