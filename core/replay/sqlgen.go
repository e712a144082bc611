package replay

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// column is a replica column as the applier needs it.
type column struct {
	typ       string // format_type: safe SQL text made by the server
	generated bool
	viaText   bool // json or jsonb: the origin sends its text form, cast here
}

// tableMeta is what the applier knows of a replica table, loaded once.
type tableMeta struct {
	cols  map[string]column
	stmts map[string]string // statement by op and column signature
	relid uint32            // the table's oid (multi-master: its apply function is named by it)
	// target is how UPDATE, DELETE and TRUNCATE name the table: with ONLY
	// for an ordinary table, so that they touch exactly the rows the
	// origin's statement touched and never an inheritance child's (whose
	// own changes come as its own events); a partitioned table is named as
	// it is (its rows are in its partitions).
	target string
}

// tableMeta loads the replica's columns of a table.
func (a *applier) tableMeta(ctx context.Context, t pg.Table, eventID int64) (*tableMeta, error) {
	if m, ok := a.meta[t]; ok {
		return m, nil
	}
	rows, err := a.conn.Query(ctx, `
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
       coalesce(nullif(t.typbasetype, 0), t.oid) IN ('json'::regtype, 'jsonb'::regtype)
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, t.Ident())
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", t, err)
	}
	m := &tableMeta{cols: map[string]column{}, stmts: map[string]string{}, target: "ONLY " + t.Ident()}
	for rows.Next() {
		var name string
		var c column
		if err := rows.Scan(&name, &c.typ, &c.generated, &c.viaText); err != nil {
			return nil, fmt.Errorf("columns of %s: %w", t, err)
		}
		m.cols[name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s: %w", t, err)
	}
	if len(m.cols) == 0 {
		return nil, stopTable(t, nil, "replica %s lacks table %s (event %d); its events are held there: create it, then pgreplica retry --table %s (or pgreplica sync --table %s)", a.replica, t, eventID, t, t)
	}
	var kind string
	if err := a.conn.QueryRow(ctx, `SELECT relkind::text, oid FROM pg_class WHERE oid = to_regclass($1)`, t.Ident()).Scan(&kind, &m.relid); err != nil {
		return nil, fmt.Errorf("kind of %s: %w", t, err)
	}
	if kind == "p" {
		m.target = t.Ident()
	}
	a.meta[t] = m
	return m, nil
}

// columns returns the column names of a parsed image, checked against the
// replica table.
func (a *applier) columns(m *tableMeta, t pg.Table, im image, eventID int64) ([]string, error) {
	names := im.keys()
	return names, a.checkColumns(m, t, names, eventID)
}

// checkColumns makes sure the replica table has every column, writable.
func (a *applier) checkColumns(m *tableMeta, t pg.Table, cols []string, eventID int64) error {
	for _, c := range cols {
		col, ok := m.cols[c]
		switch {
		case !ok:
			return stopTable(t, nil, "replica %s: table %s lacks column %s (event %d); its events are held there: add the column, then pgreplica retry --table %s (or pgreplica sync --table %s)", a.replica, t, pg.Name(c), eventID, t, t)
		case col.generated:
			return stop("replica %s: column %s of %s is generated there and cannot be written (event %d)", a.replica, pg.Name(c), t, eventID)
		}
	}
	return nil
}

// recordDef is "AS alias(col type, ...)" for jsonb_to_record: only the
// columns present, so a NOT NULL domain of an absent column does not fail.
func recordDef(m *tableMeta, alias string, cols []string) string {
	var b strings.Builder
	b.WriteString(alias)
	b.WriteByte('(')
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c}.Sanitize())
		b.WriteByte(' ')
		if m.cols[c].viaText {
			b.WriteString("text")
		} else {
			b.WriteString(m.cols[c].typ)
		}
	}
	b.WriteByte(')')
	return b.String()
}

// value is the expression of column c of the record alias, cast back to
// the column's type when it travels as text.
func value(m *tableMeta, alias, c string) string {
	v := alias + "." + pgx.Identifier{c}.Sanitize()
	if col := m.cols[c]; col.viaText {
		v += "::" + col.typ
	}
	return v
}

func keyMatch(m *tableMeta, keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = "t." + pgx.Identifier{k}.Sanitize() + " = " + value(m, "k", k)
	}
	return strings.Join(parts, " AND ")
}

func idents(cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(parts, ", ")
}

func values(m *tableMeta, alias string, cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = value(m, alias, c)
	}
	return strings.Join(parts, ", ")
}

func nullText(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// statement builds (once per table, operation and column set) the SQL that
// applies an event, and returns it with its arguments.
// viaMM reports whether e is applied through its table's multi-master
// apply function (a change with versions, on a multi-master direction).
func (a *applier) viaMM(e *event) bool {
	return a.mm != nil && e.Meta != nil && (e.Op == 'I' || e.Op == 'U' || e.Op == 'D')
}

func (a *applier) statement(ctx context.Context, e *event) (string, []any, error) {
	m, err := a.tableMeta(ctx, e.Table, e.ID)
	if err != nil {
		return "", nil, err
	}
	if a.viaMM(e) {
		return a.mm.statement(m, a.set, e)
	}
	e.parse()
	var dataCols, keyCols []string
	if e.Op == 'I' || e.Op == 'U' {
		if dataCols, err = a.columns(m, e.Table, e.data, e.ID); err != nil {
			return "", nil, err
		}
	}
	if e.Op == 'U' || e.Op == 'D' {
		if keyCols, err = a.columns(m, e.Table, e.key, e.ID); err != nil {
			return "", nil, err
		}
	}
	sig := string(e.Op) + strings.Join(dataCols, "\x00") + "\x01" + strings.Join(keyCols, "\x00")
	sql, ok := m.stmts[sig]
	if !ok {
		t := e.Table.Ident()
		switch e.Op {
		case 'I':
			sql = fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_to_record($1::jsonb) AS %s",
				t, idents(dataCols), values(m, "n", dataCols), recordDef(m, "n", dataCols))
		case 'U':
			sets := make([]string, len(dataCols))
			for i, c := range dataCols {
				sets[i] = pgx.Identifier{c}.Sanitize() + " = " + value(m, "n", c)
			}
			sql = fmt.Sprintf("UPDATE %s AS t SET %s FROM jsonb_to_record($1::jsonb) AS %s, jsonb_to_record($2::jsonb) AS %s WHERE %s",
				m.target, strings.Join(sets, ", "), recordDef(m, "n", dataCols), recordDef(m, "k", keyCols), keyMatch(m, keyCols))
		case 'D':
			sql = fmt.Sprintf("DELETE FROM %s AS t USING jsonb_to_record($1::jsonb) AS %s WHERE %s",
				m.target, recordDef(m, "k", keyCols), keyMatch(m, keyCols))
		default:
			return "", nil, stop("event %d: unknown operation %q", e.ID, e.Op)
		}
		m.stmts[sig] = sql
	}
	switch e.Op {
	case 'I':
		return sql, []any{string(e.Data)}, nil
	case 'U':
		return sql, []any{string(e.Data), string(e.Key)}, nil
	default:
		return sql, []any{string(e.Key)}, nil
	}
}

// setStmt is one set-based statement: it returns the ordinal (1-based) of
// each row of arg it touched.
type setStmt struct {
	sql  string
	arg  []string
	rows []*rowChange
	op   byte
}

// deleteStmt deletes rows by key.
func (a *applier) deleteStmt(tn *tableNet, rows []*rowChange) (setStmt, error) {
	m := a.meta[tn.table]
	if err := a.checkColumns(m, tn.table, tn.keyCols, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	keys := make([]string, len(rows))
	for i, n := range rows {
		keys[i] = n.key.json()
	}
	sql := fmt.Sprintf(`DELETE FROM %s AS t USING unnest($1::text[]) WITH ORDINALITY AS u(j, ord),
	                     jsonb_to_record(u.j::jsonb) AS %s WHERE %s RETURNING u.ord`,
		m.target, recordDef(m, "k", tn.keyCols), keyMatch(m, tn.keyCols))
	return setStmt{sql: sql, arg: keys, rows: rows, op: 'D'}, nil
}

// updateStmt updates rows with the same changed columns.
func (a *applier) updateStmt(tn *tableNet, rows []*rowChange) (setStmt, error) {
	m := a.meta[tn.table]
	cols := rows[0].data.keys()
	all := append(slices.Clone(tn.keyCols), cols...)
	if err := a.checkColumns(m, tn.table, all, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	objs := make([]string, len(rows))
	for i, n := range rows {
		objs[i] = n.key.merge(n.data).json()
	}
	sets := make([]string, len(cols))
	for i, c := range cols {
		sets[i] = pgx.Identifier{c}.Sanitize() + " = " + value(m, "n", c)
	}
	match := strings.ReplaceAll(keyMatch(m, tn.keyCols), " = k.", " = n.")
	sql := fmt.Sprintf(`UPDATE %s AS t SET %s FROM unnest($1::text[]) WITH ORDINALITY AS u(j, ord),
	                     jsonb_to_record(u.j::jsonb) AS %s WHERE %s RETURNING u.ord`,
		m.target, strings.Join(sets, ", "), recordDef(m, "n", all), match)
	return setStmt{sql: sql, arg: objs, rows: rows, op: 'U'}, nil
}

// insertStmt inserts rows with the same columns in one statement.
func (a *applier) insertStmt(tn *tableNet, rows []*rowChange) (setStmt, error) {
	m := a.meta[tn.table]
	cols := rows[0].data.keys()
	if err := a.checkColumns(m, tn.table, cols, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	objs := make([]string, len(rows))
	for i, n := range rows {
		objs[i] = n.data.json()
	}
	sql := fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM unnest($1::text[]) AS u(j),
	                     jsonb_to_record(u.j::jsonb) AS %s`,
		tn.table.Ident(), idents(cols), values(m, "n", cols), recordDef(m, "n", cols))
	return setStmt{sql: sql, arg: objs, rows: rows, op: 'I'}, nil
}

func copyEscape(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
}
