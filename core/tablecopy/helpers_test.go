package tablecopy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/config"
	"pgreplica/core/pgtest"
	"pgreplica/core/replay"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

// The shared test helpers (core/pgtest), under this package's short names.
var (
	connect   = pgtest.Connect
	exec      = pgtest.Exec
	queryInt  = pgtest.QueryInt
	firstLine = pgtest.FirstLine
)

// kindsSchema has the type and naming cases of DESIGN.md.
const kindsSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "fine"');
CREATE DOMAIN posint AS int NOT NULL CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text, m mood);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Order ""Items""" ("select" int PRIMARY KEY, "Ünï côdé" text, "from" text, "CamelCase" int);
CREATE TABLE composite_key (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE kinds (
    id     int PRIMARY KEY,
    n      numeric,
    n2     numeric(20, 6) DEFAULT 0,
    f8     float8,
    f4     real,
    tstz   timestamptz DEFAULT now(),
    ts     timestamp,
    d      date,
    tm     time,
    iv     interval,
    b      bytea,
    ia     int[],
    ta     text[][],
    j      json,
    jb     jsonb,
    e      mood DEFAULT 'ok',
    ea     mood[],
    dom    posint,
    u      uuid,
    r      int4range,
    t      text COLLATE "C",
    big    text,
    bo     boolean,
    ip     inet,
    bits   bit varying,
    p      pair,
    g      int GENERATED ALWAYS AS (id * 10) STORED,
    ident  int GENERATED ALWAYS AS IDENTITY,
    ser    bigserial,
    UNIQUE (u)
);
CREATE INDEX kinds_lower_t ON kinds (lower(t));
CREATE INDEX kinds_e ON kinds (e) WHERE e <> 'sad';
`

// kindsRows fills the kinds tables with n rows of awkward values.
func kindsRows(n int) string {
	return fmt.Sprintf(`
INSERT INTO "Odd Schema"."Order ""Items""" SELECT g, 'ä' || g, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'from' END, g FROM generate_series(1, %[1]d) g;
INSERT INTO composite_key SELECT g, 'k ' || g, repeat('x', g %% 7) FROM generate_series(1, %[1]d) g;
INSERT INTO kinds (id, n, n2, f8, f4, tstz, ts, d, tm, iv, b, ia, ta, j, jb, e, ea, dom, u, r, t, big, bo, ip, bits, p)
SELECT g, 123456789012345678901234567890.123456789 / g, g / 7.0, CASE g %% 5 WHEN 0 THEN 'NaN' WHEN 1 THEN '-Infinity' ELSE 1.0 / g END,
       0.1 * g, '2026-03-29 01:30:00.123456+13:45'::timestamptz + g * interval '1 hour', '2026-01-01 12:00:00.5', '0001-01-01 BC',
       '23:59:59.999999', g * interval '1 day 00:00:00.000001', decode(md5(g::text), 'hex'), ARRAY[g, NULL, 3], '{{a,"b c"},{"\"q\"",NULL}}',
       '{"b": 1, "a": [true, null]}', jsonb_build_object('k', g, 'nested', jsonb_build_array(1, 2.50)),
       (ARRAY['sad', 'ok', 'happy', 'it''s "fine"'])[1 + g %% 4]::mood, '{happy,sad}', g, gen_random_uuid(), int4range(g, g + 10),
       'unicode ✓ 日本語 ' || g, CASE WHEN g %% 50 = 0 THEN repeat('toast', 50000) END, g %% 2 = 0, '192.168.0.1/24', B'10101',
       ROW(g, 'x"y', 'happy'::mood)::pair
  FROM generate_series(1, %[1]d) g;`, n)
}

// env is an origin and an empty replica database.
type env struct {
	t                     *testing.T
	ctx                   context.Context
	cfg                   *config.Config
	origin, replica       *pgx.Conn
	originDSN, replicaDSN string
	pair                  *pgtest.Pair
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	o, r := p.DBs(t)
	cfg, err := config.FromFlags("test", o, []string{r})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Purge.Interval = 0
	cfg.PollInterval = 200 * time.Millisecond
	return &env{t: t, ctx: ctx, cfg: cfg, origin: connect(t, o), replica: connect(t, r), originDSN: o, replicaDSN: r, pair: p}
}

func queryString(t *testing.T, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func testLogger() *slog.Logger {
	if os.Getenv("PGREPLICA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// once applies everything pending.
func (e *env) once() {
	e.t.Helper()
	if _, err := replay.New(e.cfg, testLogger(), replay.Options{}).Once(e.ctx); err != nil {
		e.t.Fatalf("replicate once: %v", err)
	}
}

// pgbenchInit fills the origin with pgbench data and gives
// pgbench_history a primary key.
func (e *env) pgbenchInit(scale int) {
	e.t.Helper()
	bin := filepath.Join(e.pair.Origin.BinDir(), "pgbench")
	cmd := osexec.CommandContext(e.ctx, bin, "-i", "-q", "-s", fmt.Sprint(scale), e.originDSN)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	execSQL(e.t, e.origin, `ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY`)
}

func execSQL(t *testing.T, c *pgx.Conn, sql string) { exec(t, c, sql) }

// rows is the tables' independent row-by-row comparison.
func rows(t *testing.T, c *pgx.Conn, table string) []string { return pgtest.TableRows(t, c, table) }

// requireEqual compares tables row by row between origin and replica.
func (e *env) requireEqual(tables ...string) {
	e.t.Helper()
	for _, tb := range tables {
		o, r := rows(e.t, e.origin, tb), rows(e.t, e.replica, tb)
		if len(o) == 0 {
			e.t.Fatalf("%s is empty on the origin: the test compares nothing", tb)
		}
		if len(o) != len(r) {
			e.t.Fatalf("%s: origin has %d rows, replica %d", tb, len(o), len(r))
		}
		for i := range o {
			if o[i] != r[i] {
				e.t.Fatalf("%s differs at sorted row %d:\norigin:  %.300s\nreplica: %.300s", tb, i, o[i], r[i])
			}
		}
	}
}

// load runs pgbench-like transactions (and writes to the kinds tables when
// kinds is set) on the origin from several goroutines until stopped, at
// most maxTxns in all. stop returns the number of committed transactions.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	txns   atomic.Int64
	errs   chan error
}

func startLoad(t *testing.T, dsn string, clients int, maxTxns int64, kinds bool) *load {
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
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for ctx.Err() == nil && l.txns.Load() < maxTxns {
				if err := l.txn(ctx, conn, rng, kinds); err != nil {
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
						continue // a deadlock with the install of capture: retry, as applications do
					}
					if ctx.Err() == nil {
						l.errs <- err
					}
					return
				}
				l.txns.Add(1)
			}
		}()
	}
	return l
}

func (l *load) txn(ctx context.Context, c *pgx.Conn, rng *rand.Rand, kinds bool) error {
	aid, tid, bid, delta := rng.IntN(500000)+1, rng.IntN(50)+1, rng.IntN(5)+1, rng.IntN(10000)-5000
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", delta, aid)
	b.Queue("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", delta, tid)
	b.Queue("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", delta, bid)
	b.Queue("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)", tid, bid, aid, delta)
	if kinds {
		id := rng.IntN(300) + 1
		switch rng.IntN(4) {
		case 0:
			b.Queue(`UPDATE kinds SET f8 = f8 * 1.5, e = 'happy', jb = jb || '{"x": 1}', iv = iv + interval '1 minute' WHERE id = $1`, id)
		case 1:
			b.Queue(`DELETE FROM kinds WHERE id = $1`, id)
		case 2:
			b.Queue(`INSERT INTO kinds (id, n, e, dom, u, t) VALUES ($1, 'NaN', 'sad', 7, gen_random_uuid(), 'new')
			         ON CONFLICT (id) DO UPDATE SET n = kinds.n + 1`, id+1000)
		default:
			b.Queue(`UPDATE "Odd Schema"."Order ""Items""" SET "Ünï côdé" = "Ünï côdé" || 'ö' WHERE "select" = $1`, id)
		}
	}
	b.Queue("COMMIT")
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		_, _ = c.Exec(context.Background(), "ROLLBACK")
		return err
	}
	return nil
}

// stop ends the load and fails the test if a transaction failed.
func (l *load) stop(t *testing.T) int64 {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	close(l.errs)
	for err := range l.errs {
		t.Fatalf("load: %v", err)
	}
	return l.txns.Load()
}
