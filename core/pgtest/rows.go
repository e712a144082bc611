package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// TableRows returns a table's rows as text, one line per row, sorted: the
// independent row-by-row comparison of tests. They are read with fixed
// settings (pg.ExactText: UTC, exact floats, ISO dates, hex bytea), so that
// the two servers' and sessions' settings do not make equal rows differ.
// table is SQL text: a quoted name, or a subquery in parentheses.
func TableRows(t testing.TB, c *pgx.Conn, table string) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, pg.ExactTextSQL(true)); err != nil {
		t.Fatal(err)
	}
	r, err := tx.Query(ctx, "SELECT row__::text FROM "+table+" AS row__ ORDER BY 1")
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}
