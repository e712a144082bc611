package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// fence makes the fencing of replica r's replicated tables what its
// config says (replicas[].protect): with protect, each table gets the
// pgreplica_fence statement trigger, which refuses writes from everyone but
// pgreplica's apply session; without, those triggers are dropped.
func fence(ctx context.Context, conn *pgx.Conn, cfg *config.Config, r config.Replica, tables []pg.Table, report Report) error {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Ident()
	}
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname, EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'pgreplica_fence')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
    OR EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'pgreplica_fence')
 ORDER BY 1, 2`, names)
	if err != nil {
		return fmt.Errorf("replica %s: read fences: %w", r.Name, err)
	}
	type fenced struct {
		t   pg.Table
		has bool
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fenced, error) {
		var f fenced
		return f, row.Scan(&f.t.Schema, &f.t.Name, &f.has)
	})
	if err != nil {
		return fmt.Errorf("replica %s: read fences: %w", r.Name, err)
	}
	what := fmt.Sprintf("set %s, origin %s", cfg.Name, config.Describe(cfg.Origin.DSN))
	for _, f := range list {
		var sql, line string
		switch {
		case r.Protect && !f.has:
			// The server quotes the trigger's argument (a literal there).
			if err := conn.QueryRow(ctx, `SELECT format('CREATE TRIGGER pgreplica_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
			       FOR EACH STATEMENT EXECUTE FUNCTION pgreplica.fence(%L)', $1::text, $2::text)`, f.t.Ident(), what).Scan(&sql); err != nil {
				return fmt.Errorf("replica %s: fence %s: %w", r.Name, f.t, err)
			}
			line = fmt.Sprintf("replica %s: fenced %s: writes by anyone but pgreplica are refused", r.Name, f.t)
		case !r.Protect && f.has:
			sql = "DROP TRIGGER pgreplica_fence ON " + f.t.Ident()
			line = fmt.Sprintf("replica %s: removed the fence of %s (protect is off)", r.Name, f.t)
		default:
			continue
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("replica %s: fence %s: %w (creating a fence needs TRIGGER on the table, removing one its owner)", r.Name, f.t, err)
		}
		report(line)
	}
	return nil
}

// Fenced reads which tables are fenced on each connected replica (by
// replica name); a replica that cannot be read is left out.
func Fenced(ctx context.Context, cfg *config.Config) map[string]map[pg.Table]bool {
	out := map[string]map[pg.Table]bool{}
	for _, r := range cfg.Connected() {
		conn, err := pg.ConnectReplica(ctx, r, "tables "+cfg.Name)
		if err != nil {
			continue
		}
		rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname FROM pg_trigger t
		    JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		   WHERE t.tgname = 'pgreplica_fence'`)
		if err == nil {
			tabs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pg.Table, error) {
				var t pg.Table
				return t, row.Scan(&t.Schema, &t.Name)
			})
			if err == nil && len(tabs) > 0 {
				out[r.Name] = map[pg.Table]bool{}
				for _, t := range tabs {
					out[r.Name][t] = true
				}
			}
		}
		conn.Close(context.WithoutCancel(ctx))
	}
	return out
}
