// Package copystate is a table's copy state on a replica, as
// pgreplica.table_state records it, and the one reader of that table.
//
// pgreplica sync marks a table Copying before it copies it, Catchup (at the
// copy's snapshot) once the copy has committed, and the engine marks it
// Replicating when the replica's position covers that snapshot. A table
// with no row there is replicating (it was there when capture began).
package copystate

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// State is a table's copy state on a replica.
type State string

// The copy states, from least to most advanced.
const (
	Copying     State = "copying"     // the copy runs; the table's events are held
	Catchup     State = "catchup"     // copied; events after the copy's snapshot are applied
	Replicating State = "replicating" // in the main stream
	// Held: the replica cannot apply the table's events (it lacks a
	// column...); they are held there until the operator fixes the table
	// and runs pgreplica retry --table (or copies it again).
	Held State = "held"
)

// rank orders the states: the least advanced wins where they are merged.
func (s State) rank() int {
	switch s {
	case Held:
		return 0
	case Copying:
		return 1
	case Catchup:
		return 2
	}
	return 3
}

// Syncing returns the tables of states that are being synced.
func Syncing(states map[pg.Table]State) map[pg.Table]State {
	out := map[pg.Table]State{}
	for t, s := range states {
		if s.Syncing() {
			out[t] = s
		}
	}
	return out
}

// Syncing reports whether a copy of the table is under way.
func (s State) Syncing() bool { return s == Copying || s == Catchup }

// Waiting reports whether the table is not in the main stream on the replica
// (being copied, or held): status lists such tables.
func (s State) Waiting() bool { return s == Copying || s == Catchup || s == Held }

// Least is the least advanced of states, Replicating when there are none:
// what a table's state is across every replica.
func Least(states ...State) State {
	out := Replicating
	for _, s := range states {
		if s.rank() < out.rank() {
			out = s
		}
	}
	return out
}

// Querier is a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Read returns the copy state of every table of set that pgreplica sync
// has recorded on the replica q is connected to; a table not in the map
// replicates (it was there when capture began).
// Where pgreplica is not installed the error satisfies pg.IsUndefinedTable.
func Read(ctx context.Context, q Querier, set string) (map[pg.Table]State, error) {
	rows, err := q.Query(ctx, `SELECT schema_name, table_name, state FROM pgreplica.table_state
	                             WHERE set_name = $1`, set)
	if err != nil {
		return nil, fmt.Errorf("read table states: %w", err)
	}
	out := map[pg.Table]State{}
	for rows.Next() {
		var t pg.Table
		var st string
		if err := rows.Scan(&t.Schema, &t.Name, &st); err != nil {
			return nil, fmt.Errorf("read table states: %w", err)
		}
		out[t] = State(st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read table states: %w", err)
	}
	return out, nil
}
