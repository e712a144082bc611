package replay_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
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

// env is one origin database and one or more replica databases with the
// same schema and pgreplica installed.
type env struct {
	mode     replay.ApplyMode
	t        testing.TB
	ctx      context.Context
	cfg      *config.Config
	origin   *pgx.Conn
	replicas []*pgx.Conn
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PGREPLICA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv creates fresh databases, runs schema on all of them and installs
// pgreplica with nReplicas replicas (the extra ones in the replica cluster).
func newEnv(t testing.TB, schema string, nReplicas int) *env {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	originDSN, replicaDSN := p.DBs(t)
	dsns := []string{replicaDSN}
	for i := 1; i < nReplicas; i++ {
		db, err := p.Replica.CreateDB(ctx, "replica")
		if err != nil {
			t.Fatal(err)
		}
		dsns = append(dsns, p.Replica.DSN(db))
	}
	cfg, err := config.FromFlags("test", originDSN, dsns)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Purge.Interval = 0
	e := &env{t: t, ctx: ctx, cfg: cfg}
	e.origin = connect(t, originDSN)
	exec(t, e.origin, schema)
	for _, d := range dsns {
		c := connect(t, d)
		exec(t, c, schema)
		e.replicas = append(e.replicas, c)
	}
	if err := capture.Install(ctx, cfg, func(string) {}); err != nil {
		t.Fatalf("install: %v", err)
	}
	return e
}

func (e *env) engine() *replay.Engine {
	return replay.New(e.cfg, testLogger(e.t), replay.Options{Apply: e.mode})
}

// modes runs f once per apply mode, as subtests.
func modes(t *testing.T, f func(t *testing.T, mode replay.ApplyMode)) {
	for _, m := range []replay.ApplyMode{replay.ApplyExact, replay.ApplyFast} {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

// once applies everything pending and fails the test on error.
func (e *env) once() int {
	e.t.Helper()
	n, err := e.engine().Once(e.ctx)
	if err != nil {
		e.t.Fatalf("replicate once: %v", err)
	}
	return n
}

// rows is the tables' independent row-by-row comparison.
func rows(t testing.TB, c *pgx.Conn, table string) []string { return pgtest.TableRows(t, c, table) }

// requireEqual compares tables row by row between the origin and replica i.
func (e *env) requireEqual(i int, tables ...string) {
	e.t.Helper()
	for _, tb := range tables {
		o, r := rows(e.t, e.origin, tb), rows(e.t, e.replicas[i], tb)
		if strings.Join(o, "\n") != strings.Join(r, "\n") {
			e.t.Fatalf("%s differs on replica %d:\norigin (%d rows):\n%s\nreplica (%d rows):\n%s",
				tb, i, len(o), clip(o), len(r), clip(r))
		}
	}
}

func clip(rows []string) string {
	var b strings.Builder
	for i, r := range rows {
		if i == 20 {
			b.WriteString("...\n")
			break
		}
		if len(r) > 300 {
			r = r[:300] + "..."
		}
		b.WriteString(r + "\n")
	}
	return b.String()
}
