package tablecopy

import (
	"context"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// CreateMissing creates, on every replica of cfg, those of tables that it
// lacks, from the origin's definitions (CreateMissingTables, the path of
// sync --schema), reporting one line per table created. Each replica's
// tables are created in one transaction.
func CreateMissing(ctx context.Context, cfg *config.Config, tables []pg.Table, report func(string)) error {
	if report == nil {
		report = func(string) {}
	}
	origin, err := pg.ConnectOrigin(ctx, cfg, "create tables "+cfg.Name)
	if err != nil {
		return err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	for _, r := range cfg.Replicas {
		if _, err := CreateMissingTables(ctx, origin, cfg, r, tables, report); err != nil {
			return err
		}
	}
	return nil
}
