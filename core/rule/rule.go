// Package rule resolves a replica's table rules (config replicas[].tables:
// row filter, columns, column names) against the origin's tables, for the
// parts that honour them: capture (install), the reader, sync and verify.
package rule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgerrcode"
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

// Target is the replica's table that the rows of origin table t go to
// under rule (t itself without a rule or a target). A target that does not
// parse is refused by install; here it is t.
func Target(rule *config.TableRule, t pg.Table) pg.Table {
	if rule == nil || rule.Target == "" {
		return t
	}
	to, err := pg.ParseTable(rule.Target)
	if err != nil {
		return t
	}
	return to
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
		if rule != nil && !rule.Carries(c) && !slices.Contains(key, c) {
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

// State is where one replica's rule for one table stands.
type State struct {
	Replica string
	Table   pg.Table
	Rule    *config.TableRule // the config's rule; nil when it has none (any more)
	// Installed: the hash of the rule that capture follows on the origin;
	// Copied: of the rule the replica's last copy of the table was made
	// under ("" for none).
	Hash, Installed, Copied string
}

// Problem says what the operator must do, "" when nothing.
func (s State) Problem() string {
	switch {
	case s.Hash != s.Installed:
		return "the rule in the config is not installed: run pgreplica install"
	case s.Hash != s.Copied:
		return "needs re-copy under its rule: pgreplica sync --replica " + s.Replica + " --table " + s.Table.String()
	}
	return ""
}

// States reads, for every replica reached through a connection, where its
// rules stand: each table with a rule in the config, on the origin or under
// the replica's last copy. A replica that cannot be read is left out and
// its error returned with the rest.
func States(ctx context.Context, cfg *config.Config) ([]State, error) {
	origin, err := pg.ConnectOrigin(ctx, cfg, "rules")
	if err != nil {
		return nil, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	installed := map[string]map[pg.Table]string{}
	rows, err := origin.Query(ctx, `SELECT n.nspname, c.relname, h.key, h.value
	                                  FROM pgreplica.capture_rule r JOIN pg_class c ON c.oid = r.relid
	                                  JOIN pg_namespace n ON n.oid = c.relnamespace
	                                 CROSS JOIN LATERAL jsonb_each_text(r.hashes) h`)
	if err != nil && !pg.IsUndefinedTable(err) {
		return nil, fmt.Errorf("origin: read rules: %w", err)
	}
	if err == nil {
		for rows.Next() {
			var t pg.Table
			var replica, hash string
			if err := rows.Scan(&t.Schema, &t.Name, &replica, &hash); err != nil {
				return nil, fmt.Errorf("origin: read rules: %w", err)
			}
			if installed[replica] == nil {
				installed[replica] = map[pg.Table]string{}
			}
			installed[replica][t] = hash
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("origin: read rules: %w", err)
		}
	}
	var out []State
	var errs []error
	for _, r := range cfg.Connected() {
		rules, err := Tables(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		copied, err := readCopied(ctx, cfg, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen := map[pg.Table]bool{}
		add := func(t pg.Table) {
			if seen[t] {
				return
			}
			seen[t] = true
			out = append(out, State{Replica: r.Name, Table: t, Rule: rules[t], Hash: rules[t].Hash(),
				Installed: installed[r.Name][t], Copied: copied[t]})
		}
		for t := range rules {
			add(t)
		}
		for t := range installed[r.Name] {
			add(t)
		}
		for t := range copied {
			add(t)
		}
	}
	slices.SortFunc(out, func(a, b State) int {
		return cmp.Or(strings.Compare(a.Replica, b.Replica), strings.Compare(a.Table.String(), b.Table.String()))
	})
	return out, errors.Join(errs...)
}

// readCopied reads the rule hashes of the replica's copies.
func readCopied(ctx context.Context, cfg *config.Config, r config.Replica) (map[pg.Table]string, error) {
	c, err := pg.ConnectReplica(ctx, r, "rules")
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `SELECT schema_name, table_name, rule FROM pgreplica.table_state
	                            WHERE set_name = $1 AND rule IS NOT NULL`, cfg.Name)
	if pg.IsUndefinedTable(err) || pg.Code(err) == pgerrcode.UndefinedColumn {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replica %s: read rules: %w", r.Name, err)
	}
	out := map[pg.Table]string{}
	for rows.Next() {
		var t pg.Table
		var h string
		if err := rows.Scan(&t.Schema, &t.Name, &h); err != nil {
			return nil, fmt.Errorf("replica %s: read rules: %w", r.Name, err)
		}
		out[t] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("replica %s: read rules: %w", r.Name, err)
	}
	return out, nil
}

// Any reports whether some replica of cfg has a table rule.
func Any(cfg *config.Config) bool {
	return slices.ContainsFunc(cfg.Replicas, func(r config.Replica) bool { return len(r.Tables) > 0 })
}

// Transforms returns the transforms of replica for table t as install
// checked them and compiled them into capture ({column: expression, cast
// to the column's type}); sync and verify select the same values.
func Transforms(ctx context.Context, q Querier, replica string, t pg.Table) (map[string]string, error) {
	var out map[string]string
	err := q.QueryRow(ctx, `SELECT (SELECT transforms->$2 FROM pgreplica.capture_rule WHERE relid = to_regclass($1))`,
		t.Ident(), replica).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("origin: transforms of %s for replica %s: %w", t, replica, err)
	}
	return out, nil
}

// SelectList is the projection's select list on the origin: each column,
// or its transform, named as on the replica when named is set.
func (p Projection) SelectList(transforms map[string]string, named bool) string {
	parts := make([]string, len(p.Origin))
	for i, c := range p.Origin {
		parts[i] = pgx.Identifier{c}.Sanitize()
		if x, ok := transforms[c]; ok {
			parts[i] = "(" + x + ")"
		}
		if named {
			parts[i] += " AS " + pgx.Identifier{p.Replica[i]}.Sanitize()
		}
	}
	return strings.Join(parts, ", ")
}
