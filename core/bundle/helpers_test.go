package bundle

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pgtest"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

// The shared test helpers (core/pgtest), under this package's short names.
var (
	connect  = pgtest.Connect
	exec     = pgtest.Exec
	queryInt = pgtest.QueryInt
)

// schema is created on both sides: the replica's copy stands for a
// pg_dump --schema-only carried over with the first bundle.
const schema = `
CREATE TABLE zones (id int PRIMARY KEY, name text);
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text, zone int REFERENCES zones);
CREATE TABLE history (id bigserial PRIMARY KEY, account int NOT NULL, delta bigint NOT NULL,
                      at timestamptz NOT NULL DEFAULT now(), amount numeric, raw bytea, doc jsonb);
CREATE TABLE "Odd ""Name""" ("select" int PRIMARY KEY, "Ünï" text);
`

const seed = `
INSERT INTO zones VALUES (1, 'north'), (2, 'south');
INSERT INTO accounts SELECT g, 0, 'line ' || g || E'\n\ttab \\ back', g % 2 + 1 FROM generate_series(1, 200) g;
INSERT INTO history (account, delta, amount, raw, doc)
SELECT g, g, 1.0 / 3 * g, '\xdeadbeef', '{"k": [1, 2.50, "é"], "n": null}' FROM generate_series(1, 50) g;
INSERT INTO "Odd ""Name""" VALUES (1, 'ü'), (2, NULL);
`

// env is an origin and a file replica in another cluster. The code under
// test never gets the replica's DSN: only Import does, as a file replica's
// site would run it; the test itself reads both sides to check.
type env struct {
	t          testing.TB
	ctx        context.Context
	cfg        *config.Config
	originDSN  string
	replicaDSN string
	origin     *pgx.Conn
	replica    *pgx.Conn
	dir        string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	o, r := p.DBs(t)
	cfg := config.Default()
	cfg.Name = "shop"
	cfg.Origin.DSN = o
	cfg.Replicas = []config.Replica{{Name: "dmz", File: true}}
	cfg.Purge.Interval = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, cfg: &cfg, originDSN: o, replicaDSN: r, dir: t.TempDir()}
	e.origin = connect(t, o)
	e.replica = connect(t, r)
	exec(t, e.origin, schema)
	exec(t, e.origin, seed)
	exec(t, e.replica, schema)
	if err := capture.Install(ctx, e.cfg, func(string) {}); err != nil {
		t.Fatalf("install: %v", err)
	}
	return e
}

var tables = []string{"accounts", "history", `"Odd ""Name"""`, "zones"}

// export runs Export and fails the test on error.
func (e *env) export(opt ExportOptions) []Written {
	e.t.Helper()
	opt.Replica, opt.Dir = "dmz", e.dir
	ws, err := Export(e.ctx, e.cfg, opt)
	if err != nil {
		e.t.Fatalf("export: %v", err)
	}
	return ws
}

// importFiles runs Import on the replica and fails the test on error.
func (e *env) importFiles(opt ImportOptions, files ...Written) ImportResult {
	e.t.Helper()
	res, err := Import(e.ctx, e.replicaDSN, paths(files), opt)
	if err != nil {
		e.t.Fatalf("import: %v", err)
	}
	return res
}

func paths(ws []Written) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Path
	}
	return out
}

// snapshotRows is every table of one side, for "unchanged" checks.
func snapshotRows(t testing.TB, c *pgx.Conn) string {
	t.Helper()
	var b strings.Builder
	for _, tb := range tables {
		b.WriteString(tb + ":\n" + strings.Join(pgtest.TableRows(t, c, tb), "\n") + "\n")
	}
	b.WriteString("position: " + strings.Join(pgtest.TableRows(t, c, "(SELECT set_name, snapshot, target, last_id FROM pgreplica.position)"), "\n"))
	b.WriteString("\nimports: " + strings.Join(pgtest.TableRows(t, c, "(SELECT set_name, seq, sha256 FROM pgreplica.bundle_import)"), "\n"))
	return b.String()
}

// requireEqual compares every table row by row.
func (e *env) requireEqual() {
	e.t.Helper()
	for _, tb := range tables {
		o, r := pgtest.TableRows(e.t, e.origin, tb), pgtest.TableRows(e.t, e.replica, tb)
		if len(o) == 0 {
			e.t.Fatalf("%s is empty on the origin: the test compares nothing", tb)
		}
		if strings.Join(o, "\n") != strings.Join(r, "\n") {
			e.t.Fatalf("%s differs: origin %d rows, replica %d rows", tb, len(o), len(r))
		}
	}
}

// load writes on the origin from several goroutines until stopped.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	txns   atomic.Int64
	errs   chan error
}

func startLoad(t testing.TB, dsn string, clients int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, errs: make(chan error, clients)}
	for i := range clients {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer conn.Close(context.Background())
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				a, d := rng.IntN(200)+1, rng.IntN(1000)-500
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				b.Queue("UPDATE accounts SET balance = balance + $1 WHERE id = $2", d, a)
				b.Queue("INSERT INTO history (account, delta, amount, doc) VALUES ($1, $2::bigint, $2::bigint / 7.0, jsonb_build_object('d', $2::bigint))", a, d)
				if rng.IntN(5) == 0 {
					b.Queue("DELETE FROM history WHERE id = (SELECT min(id) FROM history)")
				}
				b.Queue("COMMIT")
				if err := conn.SendBatch(ctx, b).Close(); err != nil {
					if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
						l.errs <- err
					}
					return
				}
				l.txns.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) stop(t testing.TB) int64 {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Fatalf("load: %v", err)
	}
	return l.txns.Load()
}
