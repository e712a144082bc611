package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// A table the replica cannot apply events to (it lacks the table or a
// column, or has a column the events do not fill that needs a value) stops
// only that table's stream: the worker records the table as held
// (pgreplica.table_state, state 'held', with the reason) and goes on; the
// table's events are then kept in pgreplica.held, in order, while every
// other table keeps flowing. The way out is to fix the table on the replica
// and run pgreplica retry --table T (the held events are then applied
// first, before the table's new ones), or to copy it again with
// pgreplica sync --table T.

// tableStop is a stop caused by one table's shape on the replica.
type tableStop struct {
	stopError
	table pg.Table
}

// stopTable is stop for an event of table t that does not fit the
// replica's table.
func stopTable(t pg.Table, cause error, format string, args ...any) error {
	return &tableStop{stopError: stopError{msg: fmt.Sprintf(format, args...), err: cause}, table: t}
}

// heldTable reports the table of err when only that table's stream should
// stop.
func heldTable(err error) (pg.Table, string, bool) {
	var ts *tableStop
	if errors.As(err, &ts) && ts.table.Name != "" {
		return ts.table, ts.msg, true
	}
	return pg.Table{}, "", false
}

// holdTable records table t as held on the replica, with why.
func holdTable(ctx context.Context, conn *pgx.Conn, set string, t pg.Table, reason string) error {
	_, err := conn.Exec(ctx, `
INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state, snapshot, reason, updated_at)
VALUES ($1, $2, $3, 'held', NULL, $4, now())
    ON CONFLICT (set_name, schema_name, table_name)
    DO UPDATE SET state = 'held', snapshot = NULL, reason = $4, updated_at = now()`, set, t.Schema, t.Name, reason)
	if err != nil {
		return fmt.Errorf("hold the events of %s: %w", t, err)
	}
	return nil
}

// heldNames are the tables of states that are held, sorted.
func heldNames(states map[pg.Table]tableState) []string {
	var out []string
	for t, st := range states {
		if st.state == "held" {
			out = append(out, t.String())
		}
	}
	slices.Sort(out)
	return out
}

// nothingVisible is a snapshot in which no transaction is visible: a held
// table released by RetryTable is in catchup at it, so that none of its
// held events is skipped.
const nothingVisible = "1:1:"

// RetryTable releases a held table on replica r: its held events are
// applied, before the table's new ones, at the engine's next batch (and it
// is held again if they still do not fit). It returns false when the table
// was not held.
func RetryTable(ctx context.Context, cfg *config.Config, r config.Replica, t pg.Table) (bool, error) {
	conn, err := pg.ConnectReplica(ctx, r, "retry "+cfg.Name)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tag, err := conn.Exec(ctx, `UPDATE pgreplica.table_state SET state = 'catchup', snapshot = $4, reason = NULL, updated_at = now()
	                             WHERE set_name = $1 AND schema_name = $2 AND table_name = $3 AND state = 'held'`,
		cfg.Name, t.Schema, t.Name, nothingVisible)
	if err != nil {
		return false, fmt.Errorf("replica %s: release %s: %w", r.Name, t, err)
	}
	return tag.RowsAffected() == 1, nil
}
