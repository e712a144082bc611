package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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

// queuePositionUpdate adds the position update to a batch. It succeeds only
// if the stored position is still old: otherwise (a second applier on the
// same replica, a verify) it raises positionMovedCode, which fails the
// transaction, so that nothing is committed (even with a COMMIT pipelined
// after it).
func queuePositionUpdate(b *pgx.Batch, set string, old, next Position, events int) {
	b.Queue(`WITH moved AS (
	           UPDATE pgreplica.position
	              SET snapshot = $2, target = $3, last_id = $4,
	                  applied_events = applied_events + $5, applied_at = now()
	            WHERE set_name = $1 AND snapshot = $6
	              AND target IS NOT DISTINCT FROM $7 AND coalesce(last_id, 0) = $8
	           RETURNING 1)
	         SELECT CASE WHEN EXISTS (SELECT FROM moved) THEN true ELSE pgreplica.position_moved() END`,
		set, next.Snapshot.String(), nullable(next.Target), next.LastID, events,
		old.Snapshot.String(), nullable(old.Target), old.LastID)
}
