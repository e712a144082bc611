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
)

// Status is a table's capture status on the origin.
type Status string

// The capture statuses of a table.
const (
	Installed Status = "installed"
	Missing   Status = "missing"
	NoKey     Status = "no primary key"
	Disabled  Status = "disabled"
)

// TableInfo is one table of the origin as the tables view shows it.
type TableInfo struct {
	Table   pg.Table
	Key     []string // primary key columns in key order; nil without one
	Status  Status
	Pending int64     // events in the log not yet applied by the slowest replica
	Last    time.Time // when the newest event still in the log was captured; zero if none
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
SELECT n.nspname, c.relname,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary),
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
		if err := rows.Scan(&ti.Table.Schema, &ti.Table.Name, &ti.Key, &enabled); err != nil {
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
		out = append(out, ti)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if v, err := SchemaVersion(ctx, q); err != nil || v == "" {
		return out, err
	}
	return out, addPending(ctx, q, out)
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
