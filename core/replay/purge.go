package replay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// PurgeResult says what a purge removed from the origin's log.
type PurgeResult struct {
	Truncated int64 // events removed by emptying a whole log table
	Deleted   int64 // events removed row by row
	Kept      int64 // events some replica still needs
}

// logTables are the children of pgreplica.log; the capture trigger writes
// event id n into logTables[(n/logBlock)%3].
var logTables = [3]string{"pgreplica.log_0", "pgreplica.log_1", "pgreplica.log_2"}

const logBlock = 100000

// Purge removes from the origin's log the events that every replica
// registered in pgreplica.replica has applied (rserv's CleanLog). A log
// table that the trigger is not filling now is emptied with TRUNCATE once
// every event in it is applied, so the log does not bloat; otherwise the
// applied events are deleted. With no replica registered nothing is
// removed.
func Purge(ctx context.Context, conn *pgx.Conn) (PurgeResult, error) {
	var res PurgeResult
	var replicas int
	var last int64
	err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgreplica.replica),
	                                  (SELECT last_value FROM pgreplica.log_id_seq)`).Scan(&replicas, &last)
	if err != nil {
		return res, fmt.Errorf("purge: %w", err)
	}
	current := int((last / logBlock) % 3)
	for i, table := range logTables {
		if replicas == 0 {
			n, err := count(ctx, conn, table)
			if err != nil {
				return res, err
			}
			res.Kept += n
			continue
		}
		r, err := purgeTable(ctx, conn, table, i == current)
		if err != nil {
			return res, fmt.Errorf("purge %s: %w", table, err)
		}
		res.Truncated += r.Truncated
		res.Deleted += r.Deleted
		res.Kept += r.Kept
	}
	return res, nil
}

// done is true for an event that every registered replica has applied.
const done = `NOT EXISTS (SELECT 1 FROM pgreplica.replica r WHERE NOT pg_visible_in_snapshot(l.txid, r.snapshot))`

func purgeTable(ctx context.Context, conn *pgx.Conn, table string, current bool) (PurgeResult, error) {
	var res PurgeResult
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx)
	if !current {
		// With the table locked no writer can be half way through an insert
		// into it, so "every row applied" cannot change before TRUNCATE.
		// NOWAIT: never queue in front of the capture triggers.
		_, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE NOWAIT")
		if err == nil {
			var total, open int64
			err = tx.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE NOT "+done+") FROM "+table+" l").Scan(&total, &open)
			if err != nil {
				return res, err
			}
			if total > 0 && open == 0 {
				if _, err := tx.Exec(ctx, "TRUNCATE "+table); err != nil {
					return res, err
				}
				res.Truncated = total
				return res, tx.Commit(ctx)
			}
		} else if !isLockNotAvailable(err) {
			return res, err
		} else {
			// Busy: fall through to deleting row by row in a new transaction.
			tx.Rollback(ctx)
			if tx, err = conn.Begin(ctx); err != nil {
				return res, err
			}
			defer tx.Rollback(ctx)
		}
	}
	tag, err := tx.Exec(ctx, "DELETE FROM "+table+" l WHERE "+done)
	if err != nil {
		return res, err
	}
	res.Deleted = tag.RowsAffected()
	if res.Kept, err = count(ctx, tx, table); err != nil {
		return res, err
	}
	return res, tx.Commit(ctx)
}

func count(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

func isLockNotAvailable(err error) bool { return pg.IsLockNotAvailable(err) }

// PurgeNowResult is PurgeResult plus the replicas registered on the origin
// that the config does not name (they hold the purge back).
type PurgeNowResult struct {
	PurgeResult
	Holding []string
}

// PurgeNow reads every replica's position, records it on the origin and
// purges (what `pgreplica purge` does without a running engine). A replica
// that cannot be read is reported to unreachable and keeps the position
// the origin last recorded for it.
func PurgeNow(ctx context.Context, cfg *config.Config, unreachable func(name string, err error)) (PurgeNowResult, error) {
	var res PurgeNowResult
	origin, err := pg.ConnectOrigin(ctx, cfg, "purge "+cfg.Name)
	if err != nil {
		return res, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	known := map[string]bool{}
	for _, r := range cfg.Replicas {
		known[r.Name] = true
		if r.File {
			continue // its position on the origin is the one pgreplica ack recorded
		}
		pos, err := readReplicaPosition(ctx, cfg, r)
		if err != nil {
			unreachable(r.Name, err)
			continue
		}
		if _, err := origin.Exec(ctx, `UPDATE pgreplica.replica SET snapshot = $2::pg_snapshot, updated_at = now()
		                                WHERE name = $1`, r.Name, pos.Snapshot.String()); err != nil {
			return res, fmt.Errorf("origin: record position of %s: %w", r.Name, err)
		}
	}
	rows, err := origin.Query(ctx, "SELECT name FROM pgreplica.replica ORDER BY name")
	if err != nil {
		return res, fmt.Errorf("origin: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return res, fmt.Errorf("origin: %w", err)
	}
	for _, n := range names {
		if !known[n] {
			res.Holding = append(res.Holding, n)
		}
	}
	res.PurgeResult, err = Purge(ctx, origin)
	return res, err
}

func readReplicaPosition(ctx context.Context, cfg *config.Config, r config.Replica) (Position, error) {
	conn, err := pg.ConnectReplica(ctx, r, "purge "+cfg.Name)
	if err != nil {
		return Position{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pos, err := ReadPosition(ctx, conn, cfg.Name)
	if err != nil {
		return Position{}, err
	}
	// The engine commits asynchronously: what it committed last may not be
	// on the replica's disk yet, and a crash would lose it. Purge only
	// below a position the replica has flushed.
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		return Position{}, fmt.Errorf("read WAL insert location: %w", err)
	}
	if err := waitFlushed(ctx, conn, lsn); err != nil {
		return Position{}, err
	}
	return pos, nil
}
