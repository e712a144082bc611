package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/rule"
)

// tableRules is what pgreplica.capture_rule holds for one table: the
// columns no replica receives, and per replica its checked filter and the
// hash of its rule.
type tableRules struct {
	omit       []string
	filters    map[string]string
	hashes     map[string]string
	transforms map[string]map[string]string // replica -> column -> checked expression
}

// checkRules checks every replica's table rules before anything is
// installed: the table is captured, the columns exist (the key is never
// excluded), PostgreSQL accepts the filter as an immutable boolean row
// expression, and each replica's table has the columns the rule sends and
// needs no other. Every problem is reported, each with its place in the
// config. It returns the capture rules of the tables (those with none are
// absent).
//
// With all false, tables are some of the replicated tables (add-table) and
// the rules of the others are left alone.
func (s *session) checkRules(ctx context.Context, tables []TableInfo, all bool) (map[pg.Table]*tableRules, error) {
	captured := map[pg.Table]TableInfo{}
	listed := map[pg.Table]bool{}
	for _, t := range tables {
		listed[t.Table] = true
		if t.Status != NoKey {
			captured[t.Table] = t
		}
	}
	out := map[pg.Table]*tableRules{}
	var errs []error
	type columns struct{ cols, key []string }
	known := map[pg.Table]columns{}
	for _, r := range s.cfg.Replicas {
		rules, err := rule.Tables(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range slices.SortedFunc(mapKeys(rules), func(a, b pg.Table) int { return strings.Compare(a.String(), b.String()) }) {
			tr := rules[t]
			if !all && !listed[t] {
				continue
			}
			if _, ok := captured[t]; !ok {
				errs = append(errs, fmt.Errorf("%stable %s is not replicated (no such table, not selected by tables.include/exclude, or without a key)", tr.Place("table"), t))
				continue
			}
			c, ok := known[t]
			if !ok {
				cols, key, err := rule.Columns(ctx, s.origin, t)
				if err != nil {
					return nil, err
				}
				c = columns{cols, key}
				known[t] = c
			}
			problems := columnProblems(tr, t, c.cols, c.key)
			errs = append(errs, problems...)
			tabRules := out[t]
			if tabRules == nil {
				tabRules = &tableRules{filters: map[string]string{}, hashes: map[string]string{}, transforms: map[string]map[string]string{}}
				out[t] = tabRules
			}
			tabRules.hashes[r.Name] = tr.Hash()
			if tr.Filtered() {
				f, err := checkFilter(ctx, s.origin, t, tr.Where)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s%w", tr.Place("where"), err))
				}
				tabRules.filters[r.Name] = f
			}
			for _, col := range slices.Sorted(mapKeys(tr.Transform)) {
				if !slices.Contains(c.cols, col) || slices.Contains(c.key, col) {
					continue // columnProblems says why
				}
				x, err := checkTransform(ctx, s.origin, t, col, tr.Transform[col])
				if err != nil {
					errs = append(errs, fmt.Errorf("%s%w", tr.Place("transform"), err))
					continue
				}
				if tabRules.transforms[r.Name] == nil {
					tabRules.transforms[r.Name] = map[string]string{}
				}
				tabRules.transforms[r.Name][col] = x
			}
			if len(problems) == 0 {
				if i := slices.IndexFunc(s.net, func(x config.Replica) bool { return x.Name == r.Name }); i >= 0 {
					if err := requiredColumns(ctx, s.replicas[i], r.Name, rule.Target(tr, t), tr, rule.Project(tr, c.cols, c.key)); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	// Several origin tables into one replica table are refused: their keys
	// could collide (one row's changes would overwrite another's).
	for _, r := range s.cfg.Replicas {
		into := map[pg.Table]pg.Table{}
		for _, t := range tables {
			if t.Status == NoKey {
				continue
			}
			tr := rule.Of(r, t.Table)
			to := rule.Target(tr, t.Table)
			if tr != nil && tr.Target != "" {
				if _, err := pg.ParseTable(tr.Target); err != nil {
					errs = append(errs, fmt.Errorf("%s%w", tr.Place("target"), err))
				}
			}
			if other, ok := into[to]; ok {
				place := ""
				if tr == nil || tr.Target == "" {
					tr = rule.Of(r, other)
				}
				if tr != nil {
					place = tr.Place("target")
				}
				errs = append(errs, fmt.Errorf("%sreplica %s: %s and %s both go to %s: several tables into one is refused (their keys could collide)", place, r.Name, other, t.Table, to))
				continue
			}
			into[to] = t.Table
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Columns that no replica receives as they are (excluded, or
	// transformed) are left out at capture.
	for t, tabRules := range out {
		c := known[t]
		for _, col := range c.cols {
			if slices.Contains(c.key, col) {
				continue
			}
			everywhere := true
			for _, r := range s.cfg.Replicas {
				if tr := rule.Of(r, t); tr == nil || tr.Carries(col) && tr.Transform[col] == "" {
					everywhere = false
					break
				}
			}
			if everywhere {
				tabRules.omit = append(tabRules.omit, col)
			}
		}
	}
	return out, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// columnProblems checks the column names a rule uses.
func columnProblems(tr *config.TableRule, t pg.Table, cols, key []string) []error {
	var errs []error
	check := func(place, col string) bool {
		if !slices.Contains(cols, col) {
			errs = append(errs, fmt.Errorf("%s%s has no column %s (generated columns are not carried)", tr.Place(place), t, pg.Name(col)))
			return false
		}
		return true
	}
	for _, col := range tr.Columns.Include {
		check("columns", col)
	}
	for _, col := range tr.Columns.Exclude {
		if check("columns", col) && slices.Contains(key, col) {
			errs = append(errs, fmt.Errorf("%scolumn %s is the key of %s: the key always travels; remove it from exclude", tr.Place("columns"), pg.Name(col), t))
		}
	}
	for _, col := range slices.Sorted(mapKeys(tr.Rename)) {
		check("rename", col)
	}
	for _, col := range slices.Sorted(mapKeys(tr.Transform)) {
		if check("transform", col) && slices.Contains(key, col) {
			errs = append(errs, fmt.Errorf("%scolumn %s is the key of %s: it cannot be transformed (the replica finds its rows by it)", tr.Place("transform"), pg.Name(col), t))
		}
	}
	return errs
}

// checkFilter has PostgreSQL check a filter, in a transaction that is
// rolled back, as the expression of a generated column of a temporary copy
// of the table's definition: it must parse, name only the table's columns,
// be boolean, use no subquery and only immutable functions (the server's
// own rules for generated columns, and its own messages). It returns the
// server's text of the expression, which is what capture, sync and verify
// use (one expression, whatever the config's text held).
func checkFilter(ctx context.Context, conn *pgx.Conn, t pg.Table, where string) (string, error) {
	return checkExpr(ctx, conn, t, "boolean", "filter", where)
}

// checkTransform has PostgreSQL check the transform of column col as
// checkFilter checks a filter; the expression must give a value of the
// column's type (it is cast to it).
func checkTransform(ctx context.Context, conn *pgx.Conn, t pg.Table, col, expr string) (string, error) {
	var typ string
	// The type's name as the check (search_path pg_catalog) reads it.
	if err := conn.QueryRow(ctx, `SELECT (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	                                       WHERE attrelid = to_regclass($1) AND attname = $2)
	                                FROM set_config('search_path', 'pg_catalog, pg_temp', true)`, t.Ident(), col).Scan(&typ); err != nil {
		return "", fmt.Errorf("origin: type of %s.%s: %w", t, pg.Name(col), err)
	}
	return checkExpr(ctx, conn, t, typ, "transform of "+pg.Name(col), "(("+expr+"))::"+typ)
}

// checkExpr checks expr as the expression of a generated column of type
// typ; what names it in messages.
func checkExpr(ctx context.Context, conn *pgx.Conn, t pg.Table, typ, what, where string) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("origin: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	tmp := pgx.Identifier{"pg_temp", "pgreplica filter check"}.Sanitize()
	if _, err := tx.Exec(ctx, "CREATE TEMPORARY TABLE "+tmp+" (LIKE "+t.Ident()+")"); err != nil {
		return "", fmt.Errorf("origin: check the filter on a copy of %s: %w", t, err)
	}
	// Names resolve as in the capture trigger (search_path pg_catalog), so
	// that the server's text of the filter means the same there.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = pg_catalog, pg_temp"); err != nil {
		return "", fmt.Errorf("origin: %w", err)
	}
	// The extended protocol takes one statement only (pgx's Exec without
	// arguments would use the simple protocol, which takes several).
	add := "ALTER TABLE " + tmp + ` ADD COLUMN "pgreplica filter" ` + typ + ` GENERATED ALWAYS AS ((` + where + `)) STORED`
	if _, err := tx.Conn().PgConn().ExecParams(ctx, add, nil, nil, nil, nil).Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			msg := pgErr.Message
			noun := strings.Fields(what)[0]
			msg = strings.Replace(msg, "generation expression is not immutable", "the "+noun+" is not immutable (it may use only immutable functions: no now(), random(), other tables...)", 1)
			msg = strings.Replace(msg, "in column generation expression", "in a "+noun, 1)
			msg = strings.Replace(msg, `column "pgreplica filter" is of type boolean but default expression is of type`, "the filter must be boolean, not", 1)
			if pgErr.Hint != "" && !strings.Contains(pgErr.Hint, "rewrite or cast") {
				msg += " (" + strings.ReplaceAll(pgErr.Hint, "pgreplica filter check.", "") + ")"
			}
			return "", fmt.Errorf("%s %q refused by PostgreSQL: %s", what, trimCast(where, typ), msg)
		}
		return "", fmt.Errorf("%s %q: %w", what, trimCast(where, typ), err)
	}
	var checked string
	var extra int
	err = tx.QueryRow(ctx, `SELECT pg_get_expr(d.adbin, d.adrelid),
	                               (SELECT count(*) FROM pg_attribute x WHERE x.attrelid = a.attrelid AND x.attnum > a.attnum)
	                          FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	                         WHERE a.attrelid = $1::regclass AND a.attname = 'pgreplica filter'`, tmp).Scan(&checked, &extra)
	if err != nil {
		return "", fmt.Errorf("origin: read the checked %s: %w", what, err)
	}
	if extra > 0 {
		return "", fmt.Errorf("%s %q is not one expression", what, trimCast(where, typ))
	}
	return checked, nil
}

// requiredColumns checks that replica's table t has every column the rule
// sends (under its replica name) and that every column it does not send
// can be left to the replica (nullable, a default, or generated).
func requiredColumns(ctx context.Context, conn *pgx.Conn, replica string, t pg.Table, tr *config.TableRule, p rule.Projection) error {
	rows, err := conn.Query(ctx, `SELECT a.attname::text, a.attnotnull AND NOT a.atthasdef AND a.attgenerated = '' AND a.attidentity = ''
	                               FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
	                              ORDER BY a.attnum`, t.Ident())
	if err != nil {
		return fmt.Errorf("replica %s: columns of %s: %w", replica, t, err)
	}
	type col struct {
		name     string
		required bool
	}
	have, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (col, error) {
		var c col
		return c, row.Scan(&c.name, &c.required)
	})
	if err != nil {
		return fmt.Errorf("replica %s: columns of %s: %w", replica, t, err)
	}
	if len(have) == 0 {
		return nil // no such table: checkReplicasHave says so
	}
	var errs []error
	for _, name := range p.Replica {
		if !slices.ContainsFunc(have, func(c col) bool { return c.name == name }) {
			errs = append(errs, fmt.Errorf("%sreplica %s: table %s lacks column %s, which the rule sends", tr.Place("columns"), replica, t, pg.Name(name)))
		}
	}
	for _, c := range have {
		if c.required && !slices.Contains(p.Replica, c.name) {
			errs = append(errs, fmt.Errorf("%sreplica %s: column %s of %s is NOT NULL without a default, and the rule does not send it; send it, or give it a default there",
				tr.Place("columns"), replica, pg.Name(c.name), t))
		}
	}
	return errors.Join(errs...)
}

// writeRules replaces the origin's capture rules of the given tables by
// rules, in one transaction; the capture functions are made again
// afterwards (add_table), each seeing its table's rules.
func writeRules(ctx context.Context, tx pgx.Tx, rules map[pg.Table]*tableRules, tables []pg.Table) error {
	for _, t := range tables {
		if _, err := tx.Exec(ctx, "DELETE FROM pgreplica.capture_rule WHERE relid = to_regclass($1)", t.Ident()); err != nil {
			return fmt.Errorf("clear capture rules of %s: %w", t, err)
		}
	}
	for t, r := range rules {
		if !slices.Contains(tables, t) {
			continue
		}
		filters, _ := json.Marshal(r.filters)
		transforms, _ := json.Marshal(r.transforms)
		hashes, _ := json.Marshal(r.hashes)
		omit := r.omit
		if omit == nil {
			omit = []string{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgreplica.capture_rule (relid, omit, filters, hashes, transforms)
		                           VALUES (to_regclass($1), $2, $3, $4, $5)`, t.Ident(), omit, string(filters), string(hashes), string(transforms)); err != nil {
			return fmt.Errorf("record capture rules of %s: %w", t, err)
		}
	}
	return nil
}

// recordRules writes the checked rules of tables on the origin and reports
// each rule that changed since the last install: its replica needs a new
// copy of the table.
func (s *session) recordRules(ctx context.Context, rules map[pg.Table]*tableRules, tables []pg.Table, report Report) error {
	return inTx(ctx, s.origin, func(tx pgx.Tx) error {
		for _, r := range s.cfg.Replicas {
			for t, tr := range rules {
				if !slices.Contains(tables, t) {
					continue
				}
				before, err := rule.Installed(ctx, tx, r.Name, t)
				if err != nil {
					return err
				}
				if now := tr.hashes[r.Name]; now != before {
					report(fmt.Sprintf("replica %s: %s: rule %s: the replica needs a new copy under it: pgreplica sync --replica %s --table %s",
						r.Name, t, map[bool]string{true: "installed", false: "changed"}[before == ""], r.Name, t))
				}
			}
		}
		return writeRules(ctx, tx, rules, tables)
	})
}

// trimCast is a transform as the operator wrote it, without the cast that
// checkTransform put around it.
func trimCast(expr, typ string) string {
	if s, ok := strings.CutPrefix(expr, "(("); ok {
		if s, ok := strings.CutSuffix(s, "))::"+typ); ok {
			return s
		}
	}
	return expr
}
