package bundle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	pgsql "pgreplica/sql"
)

// writeAck writes the acknowledgement of the replica's position after the
// bundle h into dir: a file in the bundle format (header and checksum, no
// body) that pgreplica ack reads on the origin.
func writeAck(ctx context.Context, conn *pgx.Conn, dir string, h Header) (Written, error) {
	pos, err := replay.ReadPosition(ctx, conn, h.Set)
	if err != nil {
		return Written{}, fmt.Errorf("replica: %w", err)
	}
	var seq int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM pgreplica.bundle_import WHERE set_name = $1`, h.Set).Scan(&seq); err != nil {
		return Written{}, fmt.Errorf("replica: read the bundles applied: %w", err)
	}
	ack := Header{Format: FormatVersion, Kind: KindAck, Set: h.Set, Replica: h.Replica, Seq: seq,
		To: PointOf(pos), CaptureVersion: h.CaptureVersion, CreatedAt: time.Now().UTC()}
	return writeFile(dir, ack, nil, nil, true)
}

// AckResult is what Ack recorded.
type AckResult struct {
	Header Header
	Moved  bool            // false: the origin had recorded this position or a later one
	Before replay.Snapshot // the position recorded before
}

// Ack records on the origin the position that a file replica reported in an
// acknowledgement file (rserv's MasterSync): the purge may then remove the
// events it has applied. The position only moves forward, and only to the
// end of a bundle the origin exported for that replica.
func Ack(ctx context.Context, cfg *config.Config, path string) (AckResult, error) {
	var res AckResult
	r, err := Open(path, nil)
	if err != nil {
		return res, err
	}
	err = r.Verify()
	h := r.Header
	r.Close()
	if err != nil {
		return res, err
	}
	res.Header = h
	if h.Kind != KindAck {
		return res, fmt.Errorf("%s is %s, not an acknowledgement: import it on the replica (pgreplica import)", path, h.Describe())
	}
	if h.Set != cfg.Name {
		return res, fmt.Errorf("%s acknowledges set %s, but this config's set is %s; nothing was recorded", path, h.Set, cfg.Name)
	}
	if _, err := cfg.FileReplica(h.Replica); err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}
	conn, err := pg.ConnectAs(ctx, "origin", cfg.Origin.DSN, "pgreplica ack "+cfg.Name)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("origin: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('pgreplica.bundle_export') IS NOT NULL").Scan(&exists); err != nil {
		return res, fmt.Errorf("origin: %w", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, pgsql.BundleOrigin); err != nil {
			return res, fmt.Errorf("origin: create pgreplica.bundle_export: %w", err)
		}
	}
	var to string
	var target *string
	var lastID int64
	err = tx.QueryRow(ctx, `SELECT to_snapshot, to_target, to_last_id FROM pgreplica.bundle_export
	                         WHERE set_name = $1 AND replica = $2 AND seq = $3`, h.Set, h.Replica, h.Seq).Scan(&to, &target, &lastID)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("%s acknowledges bundle %d of replica %s, which this origin did not export; nothing was recorded", path, h.Seq, h.Replica)
	}
	if err != nil {
		return res, fmt.Errorf("origin: read bundle %d: %w", h.Seq, err)
	}
	end := Point{LastID: lastID}
	if end.Snapshot, err = replay.ParseSnapshot(to); err != nil {
		return res, err
	}
	if target != nil {
		if end.Target, err = replay.ParseSnapshot(*target); err != nil {
			return res, err
		}
	}
	if !end.Equal(h.To) {
		return res, fmt.Errorf("%s acknowledges position %s after bundle %d, but that bundle ends at %s; nothing was recorded", path, h.To, h.Seq, end)
	}
	var before string
	err = tx.QueryRow(ctx, `SELECT snapshot::text FROM pgreplica.replica WHERE name = $1 FOR UPDATE`, h.Replica).Scan(&before)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("origin: read position of %s: %w", h.Replica, err)
	}
	if before != "" {
		if res.Before, err = replay.ParseSnapshot(before); err != nil {
			return res, err
		}
	}
	// Only forward: an older acknowledgement (files delivered out of order)
	// changes nothing.
	if res.Before.IsZero() || h.To.Snapshot.Covers(res.Before) && !res.Before.Covers(h.To.Snapshot) {
		if _, err := tx.Exec(ctx, `INSERT INTO pgreplica.replica (name, snapshot, updated_at) VALUES ($1, $2::pg_snapshot, now())
		                           ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()`,
			h.Replica, h.To.Snapshot.String()); err != nil {
			return res, fmt.Errorf("origin: record position of %s: %w", h.Replica, err)
		}
		res.Moved = true
	}
	if _, err := tx.Exec(ctx, `UPDATE pgreplica.bundle_export SET acked_at = now()
	                            WHERE set_name = $1 AND replica = $2 AND seq <= $3 AND acked_at IS NULL`, h.Set, h.Replica, h.Seq); err != nil {
		return res, fmt.Errorf("origin: record acknowledgement: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("origin: commit: %w", err)
	}
	return res, nil
}
