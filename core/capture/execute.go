package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Execute runs script (SQL, usually DDL) on the origin in one transaction
// that also brings the capture of every table it changed up to date and
// writes the script into the log as one event, so that each replica runs it
// in its apply transaction exactly between the changes committed before and
// after it (Londiste's execute). The script's own data changes are not
// captured: each replica runs the whole script too. It returns the event's
// id. A script that fails changes nothing anywhere.
func Execute(ctx context.Context, cfg *config.Config, script string, report Report) (int64, error) {
	if strings.TrimSpace(script) == "" {
		return 0, errors.New("execute: the script is empty")
	}
	conn, err := pg.ConnectOrigin(ctx, cfg, "execute "+cfg.Name)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := requireOrigin(ctx, conn); err != nil {
		return 0, err
	}
	var id int64
	var refreshed []string
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// DDL waits for the application's locks, and the application
		// waits behind it: give up rather than stall the origin.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			return err
		}
		var searchPath string
		if err := tx.QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&searchPath); err != nil {
			return err
		}
		// Like an apply session: what the script writes is not captured.
		if _, err := tx.Exec(ctx, "SELECT pgreplica.begin_apply($1)", cfg.Name); err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		if _, err := tx.Exec(ctx, script); err != nil {
			return fmt.Errorf("origin: the script failed, nothing was changed: %w", err)
		}
		// Without the event trigger, or for what it does not see.
		rows, err := tx.Query(ctx, `
SELECT pgreplica.table_name(t.tgrelid) FROM pg_trigger t
 WHERE t.tgname = 'pgreplica_capture' AND t.tgparentid = 0 AND NOT pgreplica.trigger_is_current(t.tgrelid)`)
		if err != nil {
			return fmt.Errorf("origin: find changed tables: %w", err)
		}
		if refreshed, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("origin: find changed tables: %w", err)
		}
		for _, t := range refreshed {
			if _, err := tx.Exec(ctx, "SELECT pgreplica.refresh_table($1::regclass)", t); err != nil {
				return fmt.Errorf("origin: update capture of %s: %w", t, err)
			}
		}
		return tx.QueryRow(ctx, "SELECT pgreplica.log_execute($1, $2)", script, searchPath).Scan(&id)
	})
	if err != nil {
		if pg.IsLockBusy(err) {
			return 0, fmt.Errorf("%w; the tables are busy: try again when the application is quieter", err)
		}
		return 0, err
	}
	for _, t := range refreshed {
		report("updated capture of " + t)
	}
	report(fmt.Sprintf("executed on the origin; every replica runs it as event %d, between the changes before and after it", id))
	return id, nil
}
