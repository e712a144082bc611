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

// ReplicaSide is what of a replica's own would act on applied changes
// because its apply role cannot set session_replication_role: its user
// triggers on tables ("table (trigger)") and its foreign keys with actions.
// CanSkip is true (and the lists empty) when the role may skip them.
type ReplicaSide struct {
	CanSkip   bool
	Triggers  []string
	FKActions []string
}

// ReadReplicaSide reads ReplicaSide for tables on a replica connection.
func ReadReplicaSide(ctx context.Context, conn *pgx.Conn, tables []pg.Table) (ReplicaSide, error) {
	var rs ReplicaSide
	var err error
	if rs.CanSkip, err = canSkipReplicaTriggers(ctx, conn); err != nil || rs.CanSkip || len(tables) == 0 {
		return rs, err
	}
	trigs, err := userTriggers(ctx, conn, tables)
	if err != nil {
		return rs, err
	}
	for _, t := range trigs {
		rs.Triggers = append(rs.Triggers, t.table.String()+" ("+t.name+")")
	}
	rs.FKActions, err = foreignKeyActions(ctx, conn, tables)
	return rs, err
}

// checkReplicaSide reports, for a replica whose apply role cannot set
// session_replication_role, what of the replica's own will run on applied
// changes; with disable, it disables the replica's user triggers on the
// replicated tables (ALTER TABLE ... DISABLE TRIGGER, which needs the
// table's owner), one line each.
func checkReplicaSide(ctx context.Context, conn *pgx.Conn, name string, tables []pg.Table, disable bool, report Report) error {
	rs, err := ReadReplicaSide(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	node := "replica " + name
	switch {
	case rs.CanSkip || len(tables) == 0:
		return nil
	case len(rs.Triggers) == 0 && len(rs.FKActions) == 0:
		report(node + ": the apply role cannot set session_replication_role; no trigger or foreign-key action of the replica's own is affected")
		return nil
	}
	if len(rs.FKActions) > 0 {
		report(rs.FKProblem(node) + "; " + FKTry)
	}
	if len(rs.Triggers) == 0 {
		return nil
	}
	if !disable {
		report(rs.TriggersProblem(node) + "; " + TriggersTry)
		return nil
	}
	trigs, err := userTriggers(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	for _, t := range trigs {
		sql := "ALTER TABLE " + t.table.Ident() + " DISABLE TRIGGER " + pgx.Identifier{t.name}.Sanitize()
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: disable trigger %s on %s: %w (it needs the table's owner)", node, t.name, t.table, err)
		}
		report(fmt.Sprintf("%s: disabled trigger %s on %s (undo: ALTER TABLE %s ENABLE TRIGGER %s)",
			node, t.name, t.table, t.table, pg.Name(t.name)))
	}
	return nil
}

// TriggersProblem and FKProblem say, for node ("replica NAME"), what of
// the replica's own acts on applied changes; TriggersTry and FKTry what to
// do about it. install and check say the same.
func (rs ReplicaSide) TriggersProblem(node string) string {
	return node + ": the apply role cannot set session_replication_role: these triggers of the replica run on every applied change and may rewrite what the origin sent: " + strings.Join(rs.Triggers, ", ")
}

func (rs ReplicaSide) FKProblem(node string) string {
	return node + ": the apply role cannot set session_replication_role: these foreign-key actions run on applied changes (and the origin's own events then find rows already gone): " + strings.Join(rs.FKActions, ", ")
}

const (
	TriggersTry = "run pgreplica install --disable-replica-triggers to disable them (as the tables' owner), or grant SET on session_replication_role (PostgreSQL 15+)"
	FKTry       = "drop them on the replica, or grant SET on session_replication_role (PostgreSQL 15+)"
)
