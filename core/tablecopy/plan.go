package tablecopy

import (
	"context"
	"fmt"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Target is one table of one replica that Sync would copy.
type Target struct {
	Replica string
	Table   pg.Table
	Exists  bool // the replica has the table
	HasRows bool // and it has rows, which the copy replaces
}

// Plan lists what Sync would copy with these options, without changing
// anything: for the operator's confirmation before rows are replaced.
func Plan(ctx context.Context, cfg *config.Config, opt Options) ([]Target, error) {
	targets, err := targetReplicas(cfg, opt.Replica)
	if err != nil {
		return nil, err
	}
	origin, err := pg.ConnectOrigin(ctx, cfg, "sync "+cfg.Name)
	if err != nil {
		return nil, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	tables, err := SelectTables(ctx, origin, cfg, opt.Tables)
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, r := range targets {
		conn, err := pg.ConnectReplica(ctx, r, "sync "+cfg.Name)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			tg := Target{Replica: r.Name, Table: t}
			if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.Ident()).Scan(&tg.Exists); err != nil {
				conn.Close(ctx)
				return nil, fmt.Errorf("replica %s: look up %s: %w", r.Name, t, err)
			}
			if tg.Exists {
				if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Ident()+")").Scan(&tg.HasRows); err != nil {
					conn.Close(ctx)
					return nil, fmt.Errorf("replica %s: read %s: %w", r.Name, t, err)
				}
			}
			out = append(out, tg)
		}
		conn.Close(ctx)
	}
	return out, nil
}
