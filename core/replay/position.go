package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/pg"
)

// Position is how far a replica has applied a replication set. All origin
// transactions visible in Snapshot are applied. While a long interval is
// applied in several transactions, Target is the snapshot being worked
// towards and LastID the last event of it applied so far.
type Position struct {
	Snapshot      Snapshot
	Target        Snapshot // zero when no interval is half applied
	LastID        int64
	AppliedEvents int64
	AppliedAt     time.Time
}

// ErrNoPosition means the replica has no position for the set: pgreplica
// is not installed there.
var ErrNoPosition = errors.New("no position recorded; run pgreplica install (or sync) first")

// ReadPosition reads a replica's position for a set.
func ReadPosition(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, set string) (Position, error) {
	var p Position
	var target *string
	var last *int64
	err := q.QueryRow(ctx, `SELECT snapshot, target, last_id, applied_events, applied_at
	                          FROM pgreplica.position WHERE set_name = $1`, set).
		Scan(&p.Snapshot, &target, &last, &p.AppliedEvents, &p.AppliedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, ErrNoPosition
	}
	if err != nil {
		if isUndefinedTable(err) {
			return Position{}, ErrNoPosition
		}
		return Position{}, fmt.Errorf("read position: %w", err)
	}
	if target != nil {
		if p.Target, err = ParseSnapshot(*target); err != nil {
			return Position{}, err
		}
	}
	if last != nil {
		p.LastID = *last
	}
	return p, nil
}

// nullable returns nil for a zero snapshot, so it is stored as NULL.
func nullable(s Snapshot) any {
	if s.IsZero() {
		return nil
	}
	return s.String()
}

// positionMovedCode is the SQLSTATE the position update raises when the
// stored position is not the one the applier started from.
const positionMovedCode = "RP001"

// queuePositionMove adds to a batch the statement that moves the position
// from old to next and reads the tables being copied. It must be the first
// statement of the transaction: it takes the position's row lock, and it
// succeeds only if the stored position is still old. Otherwise (a second
// applier on the same replica that committed while this one waited for the
// lock, a verify) it raises positionMovedCode, which fails the transaction
// before any event is applied, so that nothing is committed (even with a
// COMMIT pipelined after it) and the loser re-reads the position instead of
// applying the same events again. read gets its result (readPositionMove).
func queuePositionMove(p *pipeline, set string, old, next Position, events int, read func(map[pg.Table]tableState, error) error) {
	p.queue(func(br pgx.BatchResults) error { return read(readPositionMove(br)) }, `WITH moved AS (
	           UPDATE pgreplica.position
	              SET snapshot = $2, target = $3, last_id = $4,
	                  applied_events = applied_events + $5, applied_at = now()
	            WHERE set_name = $1 AND snapshot = $6
	              AND target IS NOT DISTINCT FROM $7 AND coalesce(last_id, 0) = $8
	           RETURNING 1)
	         SELECT CASE WHEN EXISTS (SELECT FROM moved) THEN true ELSE pgreplica.position_moved() END,
	                s.schema_name, s.table_name, s.state, coalesce(s.snapshot, '')
	           FROM (VALUES (1)) AS one (x)
	           LEFT JOIN pgreplica.table_state s ON s.set_name = $1 AND s.state IN ('copying', 'catchup', 'held')`,
		set, next.Snapshot.String(), nullable(next.Target), next.LastID, events,
		old.Snapshot.String(), nullable(old.Target), old.LastID)
}

// readPositionMove reads the result of queuePositionMove: the tables of the
// set being copied or catching up, or errPositionMoved.
func readPositionMove(br pgx.BatchResults) (map[pg.Table]tableState, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, positionError(err)
	}
	defer rows.Close()
	var out map[pg.Table]tableState
	for rows.Next() {
		var ok bool
		var schema, name, state *string
		var snap *string
		if err := rows.Scan(&ok, &schema, &name, &state, &snap); err != nil {
			return nil, positionError(err)
		}
		if schema == nil {
			continue
		}
		t := pg.Table{Schema: *schema, Name: *name}
		st := tableState{state: *state}
		if st.state == "catchup" {
			if st.copied, err = ParseSnapshot(*snap); err != nil {
				return nil, fmt.Errorf("table state of %s: %w", t, err)
			}
		}
		if out == nil {
			out = map[pg.Table]tableState{}
		}
		out[t] = st
	}
	if err := rows.Err(); err != nil {
		return nil, positionError(err)
	}
	return out, nil
}

func positionError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == positionMovedCode {
		return errPositionMoved
	}
	return fmt.Errorf("move position: %w", err)
}
