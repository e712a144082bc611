package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// This file holds the seams through which file replicas (core/bundle) use
// the engine's reader and applier: the same interval cut by snapshots, the
// same apply with the position in one replica transaction.

// Change is one captured row change as it travels outside the engine, in a
// bundle file. Key and Data are JSON text exactly as the origin wrote them;
// nil when absent.
type Change struct {
	ID    int64
	Txid  uint64
	At    time.Time
	Table pg.Table
	Op    byte // 'I', 'U', 'D' or 'T'
	Key   []byte
	Data  []byte
}

// Querier is a connection or transaction that runs queries.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadChanges streams to fn, in apply order, the events of the interval
// (from, to] after event afterID: the engine's reader. fn may stop the
// stream by returning an error.
func ReadChanges(ctx context.Context, q Querier, from, to Snapshot, afterID int64, fn func(Change) error) error {
	return readIntervalTx(ctx, q, from, to, afterID, func(e *event) error {
		return fn(Change{ID: e.ID, Txid: e.Txid, At: e.At, Table: e.Table, Op: e.Op, Key: e.Key, Data: e.Data})
	})
}

// CurrentSnapshot takes the origin's current snapshot, the end of the next
// interval.
func CurrentSnapshot(ctx context.Context, conn *pgx.Conn) (Snapshot, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
		return Snapshot{}, fmt.Errorf("origin: take snapshot: %w", err)
	}
	return ParseSnapshot(s)
}

// PrepareApplySession sets up a replica session to apply changes as the
// engine does (origin tag, date styles, no re-capture).
func PrepareApplySession(ctx context.Context, conn *pgx.Conn, set string) error {
	return prepareApplySession(ctx, conn, set, nil)
}

// ErrPositionMoved means the replica's stored position was not the one an
// apply started from: nothing of that apply was committed.
var ErrPositionMoved = errPositionMoved

// Applier applies changes on one replica connection, as the engine does.
type Applier struct{ a *applier }

// NewApplier makes an applier on a connection prepared with
// PrepareApplySession.
func NewApplier(conn *pgx.Conn, set, replica string) *Applier {
	return &Applier{a: newApplier(conn, set, replica, ApplyAuto)}
}

// ApplyIn applies changes, in order, and moves the position from old to
// next inside tx, a transaction of the applier's connection that the caller
// commits: the engine's apply of one batch. It may be called several times
// in one transaction (old of each call the next of the one before). It
// returns the conflicts found (recorded in pgreplica.conflict in tx), or
// ErrPositionMoved when the stored position is not old.
func (a *Applier) ApplyIn(ctx context.Context, tx pgx.Tx, old, next Position, changes []Change) ([]Conflict, error) {
	events := make([]*event, len(changes))
	for i, c := range changes {
		e := &event{ID: c.ID, Txid: c.Txid, At: c.At, Table: c.Table, Op: c.Op, Key: c.Key, Data: c.Data}
		e.parse()
		events[i] = e
	}
	return a.a.applyIn(ctx, tx, old, next, events)
}

// FileReport is what the origin knows of a file replica: the bundles
// exported for it and how far it has acknowledged.
type FileReport struct {
	LastBundle     int64     // sequence number of the last bundle exported; 0 when none
	LastExportedAt time.Time // when it was written
	LastFile       string    // its file name
	Exported       Position  // where it ends: the next export starts here
	Unexported     int64     // events captured after it: what the next export carries
	Unacknowledged int64     // bundles exported and not acknowledged (pgreplica ack)
	AckedBundle    int64     // the last acknowledged bundle; 0 when none
	AckedAt        time.Time
}

// fileReplicaReport reports a file replica from the origin alone: its
// position is the one last acknowledged (pgreplica ack), recorded in
// pgreplica.replica, which the purge respects.
func fileReplicaReport(ctx context.Context, origin *pgx.Conn, set string, r config.Replica) ReplicaReport {
	rr := ReplicaReport{Name: r.Name, Target: "file", Reachable: true, File: &FileReport{}, PendingUnknown: true}
	var snap *string
	var at *time.Time
	err := origin.QueryRow(ctx, `SELECT snapshot::text, updated_at FROM pgreplica.replica WHERE name = $1`, r.Name).Scan(&snap, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		rr.Error = fmt.Sprintf("file replica %s is not registered on the origin: run pgreplica install (it registers file replicas) or pgreplica export --base --replica %s", r.Name, r.Name)
		return rr
	}
	if err != nil {
		rr.Error = fmt.Sprintf("origin: read position of %s: %v", r.Name, err)
		return rr
	}
	if rr.Position.Snapshot, err = ParseSnapshot(*snap); err != nil {
		rr.Error = err.Error()
		return rr
	}
	rr.LastAppliedAt = *at
	var oldest *time.Time
	if err := origin.QueryRow(ctx, `SELECT count(*), min(at) FROM pgreplica.log
	                                 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
	                                   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)`, *snap).Scan(&rr.Pending, &oldest); err != nil {
		rr.Error = fmt.Sprintf("origin: count pending events for %s: %v", r.Name, err)
		return rr
	}
	rr.PendingUnknown = false
	if oldest != nil {
		rr.Lag = time.Since(*oldest)
	}
	f := rr.File
	var exists bool
	if err := origin.QueryRow(ctx, "SELECT to_regclass('pgreplica.bundle_export') IS NOT NULL").Scan(&exists); err != nil || !exists {
		f.Unexported = rr.Pending
		return rr
	}
	var target *string
	err = origin.QueryRow(ctx, `
SELECT seq, created_at, file, to_snapshot, to_target, to_last_id,
       (SELECT count(*) FROM pgreplica.bundle_export u
         WHERE u.set_name = b.set_name AND u.replica = b.replica AND u.acked_at IS NULL),
       coalesce((SELECT max(seq) FROM pgreplica.bundle_export a
                  WHERE a.set_name = b.set_name AND a.replica = b.replica AND a.acked_at IS NOT NULL), 0),
       (SELECT max(acked_at) FROM pgreplica.bundle_export a
         WHERE a.set_name = b.set_name AND a.replica = b.replica)
  FROM pgreplica.bundle_export b
 WHERE set_name = $1 AND replica = $2
 ORDER BY seq DESC LIMIT 1`, set, r.Name).Scan(&f.LastBundle, &f.LastExportedAt, &f.LastFile, &f.Exported.Snapshot,
		&target, &f.Exported.LastID, &f.Unacknowledged, &f.AckedBundle, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		f.Unexported = rr.Pending
		return rr
	}
	if err != nil {
		rr.Error = fmt.Sprintf("origin: read bundles of %s: %v", r.Name, err)
		return rr
	}
	if at != nil {
		f.AckedAt = *at
	}
	if target != nil {
		if f.Exported.Target, err = ParseSnapshot(*target); err != nil {
			rr.Error = err.Error()
			return rr
		}
	}
	if f.Unexported, err = CountAfter(ctx, origin, f.Exported); err != nil {
		rr.Error = fmt.Sprintf("origin: count unexported events for %s: %v", r.Name, err)
	}
	return rr
}

// CountAfter counts the origin's events that a replica at position p has
// not applied: not visible in its snapshot, less those of a half-applied
// interval up to its last event.
func CountAfter(ctx context.Context, origin interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, p Position) (int64, error) {
	var n int64
	err := origin.QueryRow(ctx, `
SELECT count(*) FROM pgreplica.log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND NOT ($2::pg_snapshot IS NOT NULL AND pg_visible_in_snapshot(txid, $2::pg_snapshot) AND id <= $3)`,
		p.Snapshot.String(), nullable(p.Target), p.LastID).Scan(&n)
	return n, err
}
