package capture

import (
	"context"
	"fmt"

	"pgreplica/core/config"
	"pgreplica/core/copystate"
	"pgreplica/core/pg"
)

// UserTables accepts every table an operator may pick: all but pgreplica's
// own and the smoke test's (public.pgreplica_smoke).
func UserTables(schema, table string) bool {
	return schema != config.OwnSchema && !(schema == "public" && table == "pgreplica_smoke")
}

// ListOrigin connects to the set's origin for purpose and lists its tables
// that match accepts (see ListTables).
func ListOrigin(ctx context.Context, cfg *config.Config, purpose string, match func(schema, table string) bool) ([]TableInfo, error) {
	conn, err := pg.ConnectOrigin(ctx, cfg, purpose)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return ListTables(ctx, conn, match)
}

// Present reports, for each table, whether it exists in the database q is
// connected to (a replica: is the table there to receive changes?).
func Present(ctx context.Context, q Querier, tables []pg.Table) (map[pg.Table]bool, error) {
	idents := make([]string, len(tables))
	for i, t := range tables {
		idents[i] = t.Ident()
	}
	rows, err := q.Query(ctx, `SELECT to_regclass(x) IS NOT NULL FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n`, idents)
	if err != nil {
		return nil, fmt.Errorf("look for tables: %w", err)
	}
	defer rows.Close()
	out := make(map[pg.Table]bool, len(tables))
	for i := 0; rows.Next(); i++ {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			return nil, fmt.Errorf("look for tables: %w", err)
		}
		out[tables[i]] = ok
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look for tables: %w", err)
	}
	return out, nil
}

// EstimateRows is the planner's row estimate of each table; a table never
// analysed (reltuples -1) is counted when it is small, else 0. A table that
// cannot be read is left out.
func EstimateRows(ctx context.Context, q Querier, tables []pg.Table) map[pg.Table]int64 {
	out := make(map[pg.Table]int64, len(tables))
	for _, t := range tables {
		var n int64
		if q.QueryRow(ctx, `SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint
		    WHEN relpages < 10000 THEN (SELECT count(*) FROM `+t.Ident()+`) ELSE 0 END
		    FROM pg_class WHERE oid = to_regclass($1)`, t.Ident()).Scan(&n) == nil {
			out[t] = n
		}
	}
	return out
}

// Inventory is the origin's tables with, per table, the replicas that lack
// it, and the planner's row estimates: what an operator picks from.
type Inventory struct {
	Tables    []TableInfo
	Estimates map[pg.Table]int64
	Missing   map[pg.Table][]string // replica names without the table
}

// ReadInventory lists the origin's user tables (UserTables), estimates
// their rows and looks for each on every replica. An unreachable replica is
// an error.
func ReadInventory(ctx context.Context, cfg *config.Config, purpose string) (Inventory, error) {
	conn, err := pg.ConnectOrigin(ctx, cfg, purpose)
	if err != nil {
		return Inventory{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := ListTables(ctx, conn, UserTables)
	if err != nil {
		return Inventory{}, err
	}
	names := make([]pg.Table, len(tables))
	for i, t := range tables {
		names[i] = t.Table
	}
	inv := Inventory{Tables: tables, Estimates: EstimateRows(ctx, conn, names), Missing: map[pg.Table][]string{}}
	for _, r := range cfg.Replicas {
		rc, err := pg.ConnectReplica(ctx, r, purpose)
		if err != nil {
			return inv, err
		}
		has, err := Present(ctx, rc, names)
		rc.Close(context.WithoutCancel(ctx))
		if err != nil {
			return inv, fmt.Errorf("replica %s: %w", r.Name, err)
		}
		for _, t := range names {
			if !has[t] {
				inv.Missing[t] = append(inv.Missing[t], r.Name)
			}
		}
	}
	return inv, nil
}

// Progress is how far the databases show an installation has come.
type Progress struct {
	Capture   string     // the capture version installed on the origin, "" when none
	Installed []pg.Table // tables with an installed capture trigger
	// Synced: every installed table has been copied to every replica
	// (pgreplica.table_state has it, in a state past copying).
	Synced bool
}

// ReadProgress reads how far the installation of cfg's set has come. An
// error (an unreachable server) leaves what was learnt before it.
func ReadProgress(ctx context.Context, cfg *config.Config, purpose string) (Progress, error) {
	var p Progress
	conn, err := pg.ConnectOrigin(ctx, cfg, purpose)
	if err != nil {
		return p, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if p.Capture, err = SchemaVersion(ctx, conn); err != nil || p.Capture == "" {
		return p, err
	}
	tables, err := ListTables(ctx, conn, UserTables)
	if err != nil {
		return p, err
	}
	for _, t := range tables {
		if t.Status == Installed {
			p.Installed = append(p.Installed, t.Table)
		}
	}
	if len(p.Installed) == 0 {
		return p, nil
	}
	for _, r := range cfg.Replicas {
		synced, err := replicaSynced(ctx, cfg.Name, r, p.Installed, purpose)
		if err != nil || !synced {
			return p, err
		}
	}
	p.Synced = true
	return p, nil
}

// replicaSynced reports whether every table has a table_state row on
// replica r in a state past copying.
func replicaSynced(ctx context.Context, set string, r config.Replica, tables []pg.Table, purpose string) (bool, error) {
	rc, err := pg.ConnectReplica(ctx, r, purpose)
	if err != nil {
		return false, err
	}
	defer rc.Close(context.WithoutCancel(ctx))
	seen, err := copystate.Read(ctx, rc, set)
	if err != nil {
		if pg.IsUndefinedTable(err) {
			return false, nil
		}
		return false, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	for _, t := range tables {
		if st, ok := seen[t]; !ok || st == copystate.Copying {
			return false, nil
		}
	}
	return true, nil
}
