package capture

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// What a replica's own triggers and foreign keys do to applied changes.
// pgreplica's apply session sets session_replication_role = replica where
// it may (a superuser, or on PostgreSQL 15+ a role granted SET on that
// parameter): the replica's ordinary triggers and foreign-key checks and
// actions then do not run, as under native replication. Where it may not,
// they run on every applied change: a trigger that stamps last_update
// rewrites the origin's value, a cascade deletes rows the origin's own
// events then find missing (conflicts), a foreign key checks the order of
// the initial copy.

// replicaTrigger is a user trigger on a replicated table of a replica.
type replicaTrigger struct {
	table pg.Table
	name  string
}

// canSkipReplicaTriggers reports whether the session may set
// session_replication_role.
func canSkipReplicaTriggers(ctx context.Context, conn *pgx.Conn) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SAVEPOINT probe"); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return false, nil
	}
	return true, nil
}

// userTriggers lists the enabled user triggers (not pgreplica's, not
// internal) on tables of the replica.
func userTriggers(ctx context.Context, conn *pgx.Conn, tables []pg.Table) ([]replicaTrigger, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Ident()
	}
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname, t.tgname::text
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgname NOT LIKE 'pgreplica\_%'
   AND t.tgrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
 ORDER BY 1, 2, 3`, names)
	if err != nil {
		return nil, fmt.Errorf("list triggers: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (replicaTrigger, error) {
		var x replicaTrigger
		return x, r.Scan(&x.table.Schema, &x.table.Name, &x.name)
	})
}

// foreignKeyActions lists the foreign keys on replicated tables of the
// replica that do something (CASCADE, SET NULL, SET DEFAULT) on delete or
// update, as "table.constraint".
func foreignKeyActions(ctx context.Context, conn *pgx.Conn, tables []pg.Table) ([]string, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Ident()
	}
	rows, err := conn.Query(ctx, `
SELECT format('%s (%s)', f.conrelid::regclass, f.conname)
  FROM pg_constraint f
 WHERE f.contype = 'f' AND (f.confdeltype NOT IN ('a', 'r') OR f.confupdtype NOT IN ('a', 'r'))
   AND (f.conrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
        OR f.confrelid IN (SELECT to_regclass(x) FROM unnest($1::text[]) x))
 ORDER BY 1`, names)
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// checkReplicaSide reports, for a replica whose apply role cannot set
// session_replication_role, what of the replica's own will run on applied
// changes; with disable, it disables the replica's user triggers on the
// replicated tables (ALTER TABLE ... DISABLE TRIGGER, which needs the
// table's owner), one line each.
func checkReplicaSide(ctx context.Context, conn *pgx.Conn, name string, tables []pg.Table, disable bool, report Report) error {
	if len(tables) == 0 {
		return nil
	}
	ok, err := canSkipReplicaTriggers(ctx, conn)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	if ok {
		return nil
	}
	trigs, err := userTriggers(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	fks, err := foreignKeyActions(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	if len(trigs) == 0 && len(fks) == 0 {
		report(fmt.Sprintf("replica %s: the apply role cannot set session_replication_role; no trigger or foreign-key action of the replica's own is affected", name))
		return nil
	}
	if len(fks) > 0 {
		report(fmt.Sprintf("replica %s: the apply role cannot set session_replication_role: these foreign-key actions run on applied changes (and the origin's own events then find rows already gone): %s; drop them on the replica, or grant SET on session_replication_role (PostgreSQL 15+)",
			name, strings.Join(fks, ", ")))
	}
	if len(trigs) == 0 {
		return nil
	}
	list := make([]string, len(trigs))
	for i, t := range trigs {
		list[i] = t.table.String() + " (" + t.name + ")"
	}
	if !disable {
		report(fmt.Sprintf("replica %s: the apply role cannot set session_replication_role: these triggers of the replica run on every applied change and may rewrite what the origin sent: %s; run pgreplica install --disable-replica-triggers to disable them (as the tables' owner), or grant SET on session_replication_role (PostgreSQL 15+)",
			name, strings.Join(list, ", ")))
		return nil
	}
	for _, t := range trigs {
		sql := "ALTER TABLE " + t.table.Ident() + " DISABLE TRIGGER " + pgx.Identifier{t.name}.Sanitize()
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("replica %s: disable trigger %s on %s: %w (it needs the table's owner)", name, t.name, t.table, err)
		}
		report(fmt.Sprintf("replica %s: disabled trigger %s on %s (undo: ALTER TABLE %s ENABLE TRIGGER %s)",
			name, t.name, t.table, t.table, pg.Name(t.name)))
	}
	return nil
}
