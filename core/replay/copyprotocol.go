package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// The online-copy protocol. Tables being copied by `pgreplica sync` get
// special care in every batch (applyIn reads their states in the same
// statement that moves the position, so under the position's row lock):
//
//   - while a table is "copying" (or "held", see held.go) its events are
//     held in pgreplica.held instead of applied;
//   - once the copy has committed ("catchup" at the copy's snapshot) the
//     held events are taken and applied first, and every event the copy
//     already contains (its transaction visible in the copy's snapshot) is
//     skipped;
//   - when a complete interval's position covers the copy's snapshot, no
//     event from before the copy can come any more: the table is
//     "replicating" again.
//
// So a copy never blocks the stream and nothing is lost or applied twice.
// applyWithCopies enforces the first two rules, queueCopiesDone the third.
// Batches pipelined with BEGIN (applyIn's optimistic path, taken when the
// previous batch found no copy) are rolled back and applied again under
// these rules when the position move finds a copy (errCopyStarted).

// tableState is a table's state of an online copy on this replica.
type tableState struct {
	state  string   // "copying" or "catchup"
	copied Snapshot // for catchup: the snapshot the copy was taken at
}

// errCopyStarted means a table is being copied although the previous batch
// found none: the batch is applied again with the copy's rules.
var errCopyStarted = errors.New("a table copy started")

// applyWithCopies applies events in a transaction whose position is moved,
// while some tables are being copied (states): held events of the tables
// whose copy committed first, events of tables still being copied held,
// events a copy already has skipped.
func (a *applier) applyWithCopies(ctx context.Context, tx session, states map[pg.Table]tableState, skipped map[int64]bool, events []*event) ([]Conflict, error) {
	var catchup []pg.Table
	for t, st := range states {
		if st.state == "catchup" {
			catchup = append(catchup, t)
		}
	}
	if len(catchup) > 0 {
		held, err := a.takeHeld(ctx, tx, catchup)
		if err != nil {
			return nil, err
		}
		events = append(held, events...)
	}
	hold := &pgx.Batch{}
	var apply []*event
	for _, e := range events {
		st := states[e.Table]
		switch {
		case skipped[e.ID]:
			// skipped by the operator (pgreplica skip)
		case st.state == "copying" || st.state == "held":
			hold.Queue(`INSERT INTO pgreplica.held (set_name, event_id, txid, at, schema_name, table_name, op, key, data)
			            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)`,
				a.set, e.ID, int64(e.Txid), e.At, e.Table.Schema, e.Table.Name, string(e.Op), nullText(e.Key), nullText(e.Data))
		case st.state == "catchup" && st.copied.Visible(e.Txid):
			// the copy already has it
		default:
			apply = append(apply, e)
		}
	}
	if hold.Len() > 0 {
		if err := tx.SendBatch(ctx, hold).Close(); err != nil {
			return nil, fmt.Errorf("hold events of a table being copied: %w", err)
		}
	}
	return a.applyWithScripts(ctx, tx, apply, a.applyRows)
}

// takeHeld removes and returns the held events of tables, in the order
// they were held.
func (a *applier) takeHeld(ctx context.Context, tx session, tables []pg.Table) ([]*event, error) {
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i, t := range tables {
		schemas[i], names[i] = t.Schema, t.Name
	}
	rows, err := tx.Query(ctx, `
DELETE FROM pgreplica.held
 WHERE set_name = $1 AND (schema_name, table_name) IN (SELECT * FROM unnest($2::text[], $3::text[]))
RETURNING seq, event_id, txid, at, schema_name, table_name, op::text, key::text, data::text`, a.set, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("take held events: %w", err)
	}
	type heldEvent struct {
		seq int64
		e   *event
	}
	var hs []heldEvent
	for rows.Next() {
		e := &event{}
		var seq, txid int64
		var op string
		if err := rows.Scan(&seq, &e.ID, &txid, &e.At, &e.Table.Schema, &e.Table.Name, &op, &e.Key, &e.Data); err != nil {
			return nil, fmt.Errorf("take held events: %w", err)
		}
		e.Txid, e.Op = uint64(txid), op[0]
		hs = append(hs, heldEvent{seq, e})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take held events: %w", err)
	}
	slices.SortFunc(hs, func(x, y heldEvent) int { return cmpInt(x.seq, y.seq) })
	out := make([]*event, len(hs))
	for i, h := range hs {
		out[i] = h.e
	}
	return out, nil
}

// queueCopiesDone queues, into the batch that commits a position move to
// next, the end of the copies whose snapshot the position now covers.
func (a *applier) queueCopiesDone(b *pgx.Batch, states map[pg.Table]tableState, next Position) {
	if !next.Target.IsZero() {
		return
	}
	// The interval is complete: a table whose copy the position now
	// covers can no longer meet an event from before its copy.
	for t, st := range states {
		if st.state == "catchup" && next.Snapshot.Covers(st.copied) {
			b.Queue(`UPDATE pgreplica.table_state SET state = 'replicating', snapshot = NULL, updated_at = now()
			          WHERE set_name = $1 AND schema_name = $2 AND table_name = $3 AND state = 'catchup'`,
				a.set, t.Schema, t.Name)
		}
	}
}
