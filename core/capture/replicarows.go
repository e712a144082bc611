package capture

import (
	"context"
	"fmt"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// ReplicaRows estimates (EstimateRows) the rows each replica of cfg holds
// in tables, per replica name: what a copy would replace there, for the
// operator's confirmation. A table a replica lacks is absent from its map.
func ReplicaRows(ctx context.Context, cfg *config.Config, tables []pg.Table, purpose string) (map[string]map[pg.Table]int64, error) {
	out := map[string]map[pg.Table]int64{}
	for _, r := range cfg.Replicas {
		conn, err := pg.ConnectReplica(ctx, r, purpose)
		if err != nil {
			return nil, err
		}
		has, err := Present(ctx, conn, tables)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("replica %s: %w", r.Name, err)
		}
		var there []pg.Table
		for _, t := range tables {
			if has[t] {
				there = append(there, t)
			}
		}
		out[r.Name] = EstimateRows(ctx, conn, there)
		conn.Close(context.WithoutCancel(ctx))
	}
	return out, nil
}
