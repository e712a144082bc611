// Package rule resolves a replica's table rules (config replicas[].tables:
// row filter, columns, column names) against the origin's tables, for the
// parts that honour them: capture (install), the reader, sync and verify.
package rule

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Of returns replica r's rule for table t, or nil when t travels whole.
func Of(r config.Replica, t pg.Table) *config.TableRule {
	for i := range r.Tables {
		if rt, err := pg.ParseTable(r.Tables[i].Table); err == nil && rt == t {
			return &r.Tables[i]
		}
	}
	return nil
}

// Tables returns replica r's rules by origin table.
func Tables(r config.Replica) (map[pg.Table]*config.TableRule, error) {
	out := make(map[pg.Table]*config.TableRule, len(r.Tables))
	for i := range r.Tables {
		t, err := pg.ParseTable(r.Tables[i].Table)
		if err != nil {
			return nil, fmt.Errorf("%s%w", r.Tables[i].Place("table"), err)
		}
		out[t] = &r.Tables[i]
	}
	return out, nil
}

// Projection is what a replica receives of a table's columns: the origin
// columns that travel, in origin order, and their names on the replica.
type Projection struct {
	Origin  []string
	Replica []string
}

// Project applies rule (nil: every column) to the table's captured columns
// cols; key columns always travel.
func Project(rule *config.TableRule, cols, key []string) Projection {
	var p Projection
	for _, c := range cols {
		if rule != nil && !rule.Carries(c) && !contains(key, c) {
			continue
		}
		p.Origin = append(p.Origin, c)
		if rule != nil {
			p.Replica = append(p.Replica, rule.As(c))
		} else {
			p.Replica = append(p.Replica, c)
		}
	}
	return p
}

// Renamed reports whether some column has another name on the replica.
func (p Projection) Renamed() bool {
	for i := range p.Origin {
		if p.Origin[i] != p.Replica[i] {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Querier is what the functions here need of a connection or transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Columns reads a table's captured columns (non-generated, in order) and
// its key columns from the origin.
func Columns(ctx context.Context, q Querier, t pg.Table) (cols, key []string, err error) {
	err = q.QueryRow(ctx, `SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
	                                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
	                               `+pg.KeyColumnsSQL("c.oid")+`
	                          FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident()).Scan(&cols, &key)
	if err == pgx.ErrNoRows {
		return nil, nil, fmt.Errorf("origin has no table %s", t)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("origin: columns of %s: %w", t, err)
	}
	return cols, key, nil
}

// Filter returns the row filter of replica for table t as install checked
// it and compiled it into capture (PostgreSQL's own text of it), "" when
// none is installed. Sync and verify select rows with this text.
func Filter(ctx context.Context, q Querier, replica string, t pg.Table) (string, error) {
	var f *string
	err := q.QueryRow(ctx, `SELECT (SELECT filters->>$2 FROM pgreplica.capture_rule WHERE relid = to_regclass($1))`,
		t.Ident(), replica).Scan(&f)
	if err != nil {
		return "", fmt.Errorf("origin: filter of %s for replica %s: %w", t, replica, err)
	}
	if f == nil {
		return "", nil
	}
	return *f, nil
}

// Installed returns the hash of the rule that install compiled for replica
// and table t ("" for none): when it differs from the config's rule, the
// config changed since install.
func Installed(ctx context.Context, q Querier, replica string, t pg.Table) (string, error) {
	var h *string
	err := q.QueryRow(ctx, `SELECT (SELECT hashes->>$2 FROM pgreplica.capture_rule WHERE relid = to_regclass($1))`,
		t.Ident(), replica).Scan(&h)
	if err != nil {
		return "", fmt.Errorf("origin: rule of %s for replica %s: %w", t, replica, err)
	}
	if h == nil {
		return "", nil
	}
	return *h, nil
}
