// Package capture installs, inspects and removes what pgreplica puts in
// databases: the capture schema and triggers on the origin and the
// bookkeeping schema on each replica.
package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/pg"
	pgsql "pgreplica/sql"
)

// Status is a table's capture status on the origin.
type Status string

// The capture statuses of a table.
const (
	Installed Status = "installed"
	Missing   Status = "missing"
	NoKey     Status = "no primary key"
	Disabled  Status = "disabled"
	// Stale: the table changed (ALTER TABLE) since its capture function was
	// made and no event trigger made it again. Changes are still captured,
	// exactly but slowly, except that a column added since is not carried:
	// run pgreplica install.
	Stale Status = "stale"
	// Removed: capture of the table was removed (remove-table); its replicas
	// no longer follow it and need a new copy (add-table --sync).
	Removed Status = "needs re-copy"
)

// TableInfo is one table of the origin as the tables view shows it.
type TableInfo struct {
	Table pg.Table
	Key   []string // key columns in key order; nil without one
	// KeyIsUnique: the key is a unique index on NOT NULL columns, not a
	// primary key.
	KeyIsUnique bool
	Status      Status
	Pending     int64     // events in the log not yet applied by the slowest replica
	Last        time.Time // when the newest event still in the log was captured; zero if none
}

// Querier is what the functions here need of a connection or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ListTables returns every user table of the origin that match accepts,
// sorted by schema and name, with key, trigger status and pending events.
// It works before pgreplica is installed (everything is then missing).
func ListTables(ctx context.Context, q Querier, match func(schema, table string) bool) ([]TableInfo, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname, `+pg.KeyColumnsSQL("c.oid")+`, NOT `+pg.KeyIsPrimarySQL("c.oid")+`,
       (SELECT t.tgenabled::text FROM pg_trigger t
         WHERE t.tgrelid = c.oid AND t.tgname = 'pgreplica_capture')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgreplica')
   AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
 ORDER BY n.nspname, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	var out []TableInfo
	for rows.Next() {
		var ti TableInfo
		var enabled *string
		if err := rows.Scan(&ti.Table.Schema, &ti.Table.Name, &ti.Key, &ti.KeyIsUnique, &enabled); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if match != nil && !match(ti.Table.Schema, ti.Table.Name) {
			continue
		}
		switch {
		case ti.Key == nil:
			ti.Status = NoKey
		case enabled == nil:
			ti.Status = Missing
		case *enabled == "D":
			ti.Status = Disabled
		default:
			ti.Status = Installed
		}
		if ti.Key == nil {
			ti.KeyIsUnique = false
		}
		out = append(out, ti)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	v, err := SchemaVersion(ctx, q)
	if err != nil || v == "" {
		return out, err
	}
	if v == pgsql.OriginVersion {
		if err := markStaleAndRemoved(ctx, q, out); err != nil {
			return out, err
		}
	}
	return out, addPending(ctx, q, out)
}

// markStaleAndRemoved finds the installed tables whose capture function no
// longer matches their definition, and the tables whose capture was
// removed.
func markStaleAndRemoved(ctx context.Context, q Querier, tables []TableInfo) error {
	var installed []string
	missing := false
	for _, t := range tables {
		switch t.Status {
		case Installed, Disabled:
			installed = append(installed, t.Table.Ident())
		case Missing:
			missing = true
		}
	}
	stale := map[string]bool{}
	if len(installed) > 0 {
		rows, err := q.Query(ctx, `SELECT t FROM unnest($1::text[]) t WHERE NOT pgreplica.trigger_is_current(t::regclass)`, installed)
		if err != nil {
			return fmt.Errorf("check capture functions: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("check capture functions: %w", err)
		}
		for _, n := range names {
			stale[n] = true
		}
	}
	removed := map[pg.Table]bool{}
	if missing {
		names, err := RemovedTables(ctx, q)
		if err != nil {
			return err
		}
		for _, n := range names {
			removed[n] = true
		}
	}
	for i, t := range tables {
		switch {
		case t.Status == Installed && stale[t.Table.Ident()]:
			tables[i].Status = Stale
		case t.Status == Missing && removed[t.Table]:
			tables[i].Status = Removed
		}
	}
	return nil
}

// addPending fills in the events each table has in the log that the slowest
// replica has not applied yet, and when its newest event was captured.
func addPending(ctx context.Context, q Querier, tables []TableInfo) error {
	rows, err := q.Query(ctx, `
SELECT l.schema_name, l.table_name,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pgreplica.replica r
                                       WHERE NOT pg_visible_in_snapshot(l.txid, r.snapshot))),
       max(l.at)
  FROM pgreplica.log l
 GROUP BY 1, 2`)
	if err != nil {
		return fmt.Errorf("count pending events: %w", err)
	}
	defer rows.Close()
	idx := make(map[pg.Table]int, len(tables))
	for i, t := range tables {
		idx[t.Table] = i
	}
	for rows.Next() {
		var t pg.Table
		var n int64
		var last time.Time
		if err := rows.Scan(&t.Schema, &t.Name, &n, &last); err != nil {
			return fmt.Errorf("count pending events: %w", err)
		}
		if i, ok := idx[t]; ok {
			tables[i].Pending, tables[i].Last = n, last
		}
	}
	return rows.Err()
}

// RemovedTables lists the tables whose capture was removed (remove-table)
// and not installed again since.
func RemovedTables(ctx context.Context, q Querier) ([]pg.Table, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname FROM pgreplica.removed r
	                             JOIN pg_class c ON c.oid = r.relid JOIN pg_namespace n ON n.oid = c.relnamespace
	                            ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("read removed tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pg.Table, error) {
		var t pg.Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("read removed tables: %w", err)
	}
	return out, nil
}

// SchemaVersion is the installed capture schema version on the origin, or
// "" when pgreplica is not installed there.
func SchemaVersion(ctx context.Context, q Querier) (string, error) {
	return metaValue(ctx, q, "capture_version")
}

// ReplicaSchemaVersion is the installed bookkeeping schema version on a
// replica, or "" when absent.
func ReplicaSchemaVersion(ctx context.Context, q Querier) (string, error) {
	return metaValue(ctx, q, "replica_version")
}

func metaValue(ctx context.Context, q Querier, key string) (string, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('pgreplica.meta') IS NOT NULL`).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for pgreplica.meta: %w", err)
	}
	if !exists {
		return "", nil
	}
	var v string
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT value FROM pgreplica.meta WHERE key = $1), '')`, key).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("read pgreplica.meta: %w", err)
	}
	return v, nil
}
