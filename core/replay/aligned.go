package replay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// AlignedFunc works on an origin and a replica that show exactly the same
// point of the set's history: origin is a REPEATABLE READ transaction whose
// snapshot is at, exported as exportedSnapshot for parallel readers (SET
// TRANSACTION SNAPSHOT); replica is a transaction in which the replica has
// applied exactly the transactions visible in at.
type AlignedFunc func(ctx context.Context, origin, replica pgx.Tx, at Snapshot, exportedSnapshot string) error

// Aligned brings one replica to the origin's current snapshot and runs fn
// with both sides at that point, while writes go on. The replica's position
// row is locked first, so a running engine waits for Aligned (it neither
// skips nor repeats anything); then the origin's snapshot is taken, which
// is necessarily newer than the position; then the events between them are
// applied in the replica transaction. If fn returns nil the replica
// transaction commits (with any repairs fn made, and the position moved to
// at); otherwise it rolls back and nothing changes.
func Aligned(ctx context.Context, cfg *config.Config, replicaName string, fn AlignedFunc) error {
	r, err := cfg.Replica(replicaName)
	if err != nil {
		return err
	}
	w := newWorker(cfg, r, discardLogger(), func(Event) {}, ApplyAuto)
	w.beside = true
	if err := w.connect(ctx); err != nil {
		return err
	}
	defer w.disconnect()

	rtx, err := w.replicaConn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("replica %s: begin: %w", r.Name, err)
	}
	defer rtx.Rollback(ctx)
	pos, err := ReadPosition(ctx, lockedRow{rtx}, cfg.Name)
	if err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}

	otx, err := w.originConn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("origin: begin: %w", err)
	}
	defer otx.Rollback(ctx)
	var at Snapshot
	var exported string
	if err := otx.QueryRow(ctx, "SELECT pg_current_snapshot()::text, pg_export_snapshot()").Scan(&at, &exported); err != nil {
		return fmt.Errorf("origin: take snapshot: %w", err)
	}

	// Apply what the replica lacks up to at, in bounded batches, all in rtx.
	// A half-applied interval is finished first.
	for _, step := range []Snapshot{pos.Target, at} {
		if step.IsZero() || (pos.Target.IsZero() && pos.Snapshot.Covers(step)) {
			continue
		}
		cur := batch{target: step}
		flush := func(final bool) error {
			cur.final = final
			next := cur.next(pos)
			if _, err := w.apply.applyIn(ctx, rtx, pos, next, cur.events); err != nil {
				return err
			}
			next.AppliedEvents = pos.AppliedEvents + int64(len(cur.events))
			pos, cur = next, batch{target: step}
			return nil
		}
		// Read through otx: its snapshot sees every event visible in at.
		// Batches are cut as the engine cuts them (batch.max_events,
		// batch.max_bytes).
		err := readIntervalTx(ctx, otx, pos.Snapshot, step, pos.LastID, func(e *event) error {
			if !w.router.route(e) {
				return nil
			}
			if cur.full(e, w.limits) {
				if err := flush(false); err != nil {
					return err
				}
			}
			cur.add(e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("replica %s: bring to %s: %w", r.Name, at, err)
		}
		if err := flush(true); err != nil {
			return fmt.Errorf("replica %s: bring to %s: %w", r.Name, at, err)
		}
	}
	if err := fn(ctx, otx, rtx, at, exported); err != nil {
		return err
	}
	if err := rtx.Commit(ctx); err != nil {
		return fmt.Errorf("replica %s: commit: %w", r.Name, err)
	}
	return nil
}

// lockedRow reads the position with FOR UPDATE.
type lockedRow struct{ tx pgx.Tx }

func (l lockedRow) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return l.tx.QueryRow(ctx, sql+" FOR UPDATE", args...)
}

// ConnectReplica opens a replica session set up like the engine's apply
// session (origin tag, date and interval styles), for code outside the
// engine that writes replicated tables (sync, repair).
func ConnectReplica(ctx context.Context, cfg *config.Config, r config.Replica, purpose string) (*pgx.Conn, error) {
	c, err := pg.ConnectReplica(ctx, r, purpose+" "+cfg.Name)
	if err != nil {
		return nil, err
	}
	if err := prepareApplySession(ctx, c, cfg.Name, nil); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	return c, nil
}
