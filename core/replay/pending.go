package replay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// pendingWhere is the one definition of "pending" for a replica at position
// ($1 snapshot, $2 half-applied target, $3 last id): the events not visible
// in the position's snapshot, minus those of a half-applied interval
// already applied. QueryStatus counts it per replica; PendingByTable per
// table, so that `status` and `tables` agree.
const pendingWhere = `txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND NOT ($2::pg_snapshot IS NOT NULL AND pg_visible_in_snapshot(txid, $2::pg_snapshot) AND id <= $3)`

// PendingByTable counts, per table, the events captured and not yet
// applied by the slowest replica, each replica's position read from the
// replica itself (the position QueryStatus reads): `tables` and `status`
// count from one source. A replica that cannot be reached is left out and
// named in skipped.
func PendingByTable(ctx context.Context, cfg *config.Config, origin *pgx.Conn) (pending map[pg.Table]int64, skipped []string, err error) {
	pending = map[pg.Table]int64{}
	for _, r := range cfg.Replicas {
		conn, err := pg.ConnectReplica(ctx, r, "tables")
		if err != nil {
			skipped = append(skipped, r.Name)
			continue
		}
		pos, err := ReadPosition(ctx, conn, cfg.Name)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			skipped = append(skipped, r.Name)
			continue
		}
		rows, err := origin.Query(ctx, `SELECT schema_name, table_name, count(*) FROM pgreplica.log
 WHERE `+pendingWhere+` GROUP BY 1, 2`, pos.Snapshot.String(), nullable(pos.Target), pos.LastID)
		if err != nil {
			return nil, skipped, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
		}
		for rows.Next() {
			var t pg.Table
			var n int64
			if err := rows.Scan(&t.Schema, &t.Name, &n); err != nil {
				rows.Close()
				return nil, skipped, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
			}
			pending[t] = max(pending[t], n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, skipped, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
		}
	}
	return pending, skipped, nil
}

// ListTables lists the origin's tables that match (capture.ListTables),
// their pending events counted by PendingByTable: the count `status`
// makes, per table. skipped names the replicas that could not be read.
func ListTables(ctx context.Context, cfg *config.Config, purpose string, match func(schema, table string) bool) (tables []capture.TableInfo, skipped []string, err error) {
	origin, err := pg.ConnectOrigin(ctx, cfg, purpose)
	if err != nil {
		return nil, nil, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	tables, err = capture.ListTables(ctx, origin, match)
	if err != nil {
		return nil, nil, err
	}
	if v, err := capture.SchemaVersion(ctx, origin); err != nil || v == "" || len(cfg.Replicas) == 0 {
		return tables, nil, err
	}
	pending, skipped, err := PendingByTable(ctx, cfg, origin)
	if err != nil {
		return tables, skipped, err
	}
	for i := range tables {
		tables[i].Pending = pending[tables[i].Table]
	}
	return tables, skipped, nil
}
