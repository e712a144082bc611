package tablecopy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// CreateMissingTables creates on replica r the tables that it lacks, from
// the origin's definitions: columns with their types, collations, safe
// defaults, identity and generated expressions, NOT NULL, primary key,
// unique, exclusion and check constraints, indexes, and the sequences the
// defaults use. Enum, domain and composite types the columns need are
// created first; schemas too. A partitioned table is created with its
// partitions (their bounds; keys and indexes come from the parent), a table
// that inherits with INHERITS (its parents must be on the replica or made
// first). Foreign keys are not created (the origin
// enforces them; a replica applies whole transactions in commit order).
// Everything is created in one replica transaction: on any error nothing is.
// It returns the tables it created.
func CreateMissingTables(ctx context.Context, origin *pgx.Conn, cfg *config.Config, r config.Replica, tables []pg.Table, report func(string)) (map[pg.Table]bool, error) {
	conn, err := pg.ConnectReplica(ctx, r, "sync "+cfg.Name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var missing []pg.Table
	for _, t := range tables {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.Ident()).Scan(&exists); err != nil {
			return nil, fmt.Errorf("replica %s: look up %s: %w", r.Name, t, err)
		}
		if !exists {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}

	otx, err := origin.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("origin: begin: %w", err)
	}
	defer otx.Rollback(context.WithoutCancel(ctx))
	rtx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("replica %s: begin: %w", r.Name, err)
	}
	defer rtx.Rollback(context.WithoutCancel(ctx))
	// With an empty search_path every name the server prints is qualified.
	for _, tx := range []pgx.Tx{otx, rtx} {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
			return nil, fmt.Errorf("set search_path: %w", err)
		}
	}
	if err := parentsFirst(ctx, otx, missing); err != nil {
		return nil, err
	}
	m := &schemaMaker{origin: otx, replica: rtx, name: r.Name, types: map[uint32]bool{},
		schemas: map[string]bool{}, sequences: map[uint32]bool{}}
	var lines []string
	created := map[pg.Table]bool{}
	for _, t := range missing {
		m.lines = nil
		if err := m.createTable(ctx, t); err != nil {
			var te *typeError
			if errors.As(err, &te) {
				return nil, fmt.Errorf("replica %s: cannot create %s: %s", r.Name, t, te.msg)
			}
			return nil, fmt.Errorf("replica %s: cannot create %s: %w", r.Name, t, err)
		}
		lines = append(lines, m.lines...)
		created[t] = true
	}
	if err := rtx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("replica %s: commit: %w", r.Name, err)
	}
	for _, l := range lines {
		report(l)
	}
	return created, nil
}

// parentsFirst orders tables so that inheritance parents come before their
// children (by the depth of each in its inheritance tree).
func parentsFirst(ctx context.Context, origin pgx.Tx, tables []pg.Table) error {
	depth := make(map[pg.Table]int, len(tables))
	for _, t := range tables {
		var d int
		err := origin.QueryRow(ctx, `
WITH RECURSIVE up(rel, d) AS (
    SELECT to_regclass($1)::oid, 0
    UNION ALL
    SELECT i.inhparent, up.d + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.rel)
SELECT max(d) FROM up`, t.Ident()).Scan(&d)
		if err != nil {
			return fmt.Errorf("origin: read inheritance of %s: %w", t, err)
		}
		depth[t] = d
	}
	slices.SortStableFunc(tables, func(a, b pg.Table) int { return cmp.Compare(depth[a], depth[b]) })
	return nil
}

// schemaMaker creates objects on one replica inside rtx from the origin's
// catalog read in otx.
type schemaMaker struct {
	origin, replica pgx.Tx
	name            string
	types           map[uint32]bool // types made sure of
	schemas         map[string]bool
	sequences       map[uint32]bool
	lines           []string
}

// typeError is a type the replica lacks and that cannot be created.
type typeError struct{ msg string }

func (e *typeError) Error() string { return e.msg }

func (m *schemaMaker) exec(ctx context.Context, sql string) error {
	if _, err := m.replica.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", firstWords(sql), err)
	}
	return nil
}

// firstWords is the start of a statement, to say which one failed.
func firstWords(sql string) string {
	if len(sql) > 80 {
		return sql[:77] + "..."
	}
	return sql
}

func (m *schemaMaker) ensureSchema(ctx context.Context, schema string) error {
	if m.schemas[schema] {
		return nil
	}
	var exists bool
	if err := m.replica.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("look up schema: %w", err)
	}
	if !exists {
		if err := m.exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return err
		}
		m.lines = append(m.lines, fmt.Sprintf("replica %s: created schema %s", m.name, pgx.Identifier{schema}.Sanitize()))
	}
	m.schemas[schema] = true
	return nil
}

// column is an origin column as --schema needs it.
type columnDef struct {
	name       string
	typ        string
	typeOID    uint32
	notNull    bool
	identity   string // "", "a" always, "d" by default
	generated  string // "", "s" stored, "v" virtual
	expr       *string
	defaultOID *uint32
	collation  *string
}

func (m *schemaMaker) createTable(ctx context.Context, t pg.Table) error {
	var oid uint32
	var kind, persistence string
	err := m.origin.QueryRow(ctx, `SELECT c.oid, c.relkind::text, c.relpersistence::text FROM pg_class c WHERE c.oid = to_regclass($1)`,
		t.Ident()).Scan(&oid, &kind, &persistence)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("origin has no table %s", t)
	}
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if kind != "r" && kind != "p" {
		return &typeError{msg: "it is not an ordinary or partitioned table on the origin"}
	}
	var partBy string
	if kind == "p" {
		if err := m.origin.QueryRow(ctx, `SELECT pg_get_partkeydef($1)`, oid).Scan(&partBy); err != nil {
			return fmt.Errorf("origin: read partition key: %w", err)
		}
	}
	// Inheritance parents, which must exist on the replica first.
	rows, err := m.origin.Query(ctx, `SELECT n.nspname, c.relname FROM pg_inherits i
	    JOIN pg_class c ON c.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace
	   WHERE i.inhrelid = $1 ORDER BY i.inhseqno`, oid)
	if err != nil {
		return fmt.Errorf("origin: read parents: %w", err)
	}
	parents, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pg.Table, error) {
		var p pg.Table
		return p, r.Scan(&p.Schema, &p.Name)
	})
	if err != nil {
		return fmt.Errorf("origin: read parents: %w", err)
	}
	for _, p := range parents {
		var exists bool
		if err := m.replica.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", p.Ident()).Scan(&exists); err != nil {
			return fmt.Errorf("look up %s: %w", p, err)
		}
		if !exists {
			return &typeError{msg: fmt.Sprintf("it inherits from %s, which the replica lacks; select %s too (or create it there first)", p, p)}
		}
	}
	rows, err = m.origin.Query(ctx, `
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
       a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid), d.oid,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN format('%I.%I', cn.nspname, co.collname) END
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`, oid)
	if err != nil {
		return fmt.Errorf("origin: read columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (columnDef, error) {
		var c columnDef
		return c, r.Scan(&c.name, &c.typ, &c.typeOID, &c.notNull, &c.identity, &c.generated, &c.expr, &c.defaultOID, &c.collation)
	})
	if err != nil {
		return fmt.Errorf("origin: read columns: %w", err)
	}

	if err := m.ensureSchema(ctx, t.Schema); err != nil {
		return err
	}
	var owned []string // ALTER SEQUENCE ... OWNED BY, after the table exists
	defs := make([]string, 0, len(cols))
	for _, c := range cols {
		if err := m.ensureType(ctx, c.typeOID); err != nil {
			return err
		}
		def := pgx.Identifier{c.name}.Sanitize() + " " + c.typ
		if c.collation != nil {
			def += " COLLATE " + *c.collation
		}
		switch {
		case c.generated == "s" && c.expr != nil:
			def += " GENERATED ALWAYS AS (" + *c.expr + ") STORED"
		case c.generated == "v" && c.expr != nil:
			def += " GENERATED ALWAYS AS (" + *c.expr + ") VIRTUAL"
		case c.identity == "a":
			def += " GENERATED ALWAYS AS IDENTITY"
		case c.identity == "d":
			def += " GENERATED BY DEFAULT AS IDENTITY"
		case c.expr != nil:
			ok, own, err := m.defaultDeps(ctx, *c.defaultOID, oid, t, c.name)
			if err != nil {
				return err
			}
			if ok {
				def += " DEFAULT " + *c.expr
				owned = append(owned, own...)
			}
		}
		if c.notNull {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	create := "CREATE TABLE "
	if persistence == "u" {
		create = "CREATE UNLOGGED TABLE "
	}
	ddl := create + t.Ident() + " (" + strings.Join(defs, ", ") + ")"
	if len(parents) > 0 {
		names := make([]string, len(parents))
		for i, p := range parents {
			names[i] = p.Ident()
		}
		ddl += " INHERITS (" + strings.Join(names, ", ") + ")"
	}
	if kind == "p" {
		ddl += " PARTITION BY " + partBy
	}
	if err := m.exec(ctx, ddl); err != nil {
		return err
	}
	for _, s := range owned {
		if err := m.exec(ctx, s); err != nil {
			return err
		}
	}

	// Constraints, then the other indexes.
	rows, err = m.origin.Query(ctx, `
SELECT c.oid, c.contype::text, format('ALTER TABLE %s ADD CONSTRAINT %I %s', $2::text, c.conname, pg_get_constraintdef(c.oid)),
       quote_ident(c.conname)
  FROM pg_constraint c
 WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'x', 'c', 'f') AND c.conislocal
 ORDER BY c.contype = 'p' DESC, c.conname`, oid, t.Ident())
	if err != nil {
		return fmt.Errorf("origin: read constraints: %w", err)
	}
	type constraint struct {
		oid       uint32
		kind, ddl string
		name      string
	}
	cons, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (constraint, error) {
		var c constraint
		return c, r.Scan(&c.oid, &c.kind, &c.ddl, &c.name)
	})
	if err != nil {
		return fmt.Errorf("origin: read constraints: %w", err)
	}
	var what []string
	others := 0
	for _, c := range cons {
		switch c.kind {
		case "f":
			m.lines = append(m.lines, fmt.Sprintf("replica %s: %s: foreign key %s not created (the origin enforces it)", m.name, t, c.name))
			continue
		case "c":
			deps, err := m.userDeps(ctx, "pg_constraint", c.oid, oid)
			if err != nil {
				return err
			}
			if len(deps) > 0 {
				m.lines = append(m.lines, fmt.Sprintf("replica %s: %s: check constraint %s not created (it uses %s)", m.name, t, c.name, strings.Join(deps, ", ")))
				continue
			}
		}
		if c.kind == "p" {
			what = append(what, "primary key")
		} else {
			others++
		}
		if err := m.exec(ctx, c.ddl); err != nil {
			return err
		}
	}
	rows, err = m.origin.Query(ctx, `
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
 WHERE i.indrelid = $1
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                    AND k.contype IN ('p', 'u', 'x'))
 ORDER BY i.indexrelid`, oid)
	if err != nil {
		return fmt.Errorf("origin: read indexes: %w", err)
	}
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("origin: read indexes: %w", err)
	}
	for _, ix := range indexes {
		if err := m.exec(ctx, ix); err != nil {
			return err
		}
	}
	if others > 0 {
		what = append(what, plural(others, "constraint", "constraints"))
	}
	if n := len(indexes); n > 0 {
		what = append(what, plural(n, "index", "indexes"))
	}
	if len(parents) > 0 {
		what = append(what, "inherits "+parents[0].String())
	}
	parts := 0
	if kind == "p" {
		n, err := m.createPartitions(ctx, oid, t)
		if err != nil {
			return err
		}
		parts = n
		what = append(what, plural(parts, "partition", "partitions"))
	}
	line := fmt.Sprintf("replica %s: created table %s (%s", m.name, t, plural(len(cols), "column", "columns"))
	for _, w := range what {
		line += ", " + w
	}
	m.lines = append(m.lines, line+")")
	return nil
}

// createPartitions creates the partitions of the partitioned table oid
// (made on the replica as t), recursively, with their bounds; columns,
// keys and indexes come from the parent. It returns how many it made.
func (m *schemaMaker) createPartitions(ctx context.Context, oid uint32, t pg.Table) (int, error) {
	rows, err := m.origin.Query(ctx, `
SELECT c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), c.relkind::text,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = $1 ORDER BY n.nspname, c.relname`, oid)
	if err != nil {
		return 0, fmt.Errorf("origin: read partitions of %s: %w", t, err)
	}
	type part struct {
		oid         uint32
		table       pg.Table
		bound, kind string
		partBy      *string
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (part, error) {
		var p part
		return p, r.Scan(&p.oid, &p.table.Schema, &p.table.Name, &p.bound, &p.kind, &p.partBy)
	})
	if err != nil {
		return 0, fmt.Errorf("origin: read partitions of %s: %w", t, err)
	}
	n := 0
	for _, p := range parts {
		if err := m.ensureSchema(ctx, p.table.Schema); err != nil {
			return n, err
		}
		ddl := "CREATE TABLE " + p.table.Ident() + " PARTITION OF " + t.Ident() + " " + p.bound
		if p.partBy != nil {
			ddl += " PARTITION BY " + *p.partBy
		}
		if err := m.exec(ctx, ddl); err != nil {
			return n, err
		}
		n++
		if p.kind == "p" {
			k, err := m.createPartitions(ctx, p.oid, p.table)
			if err != nil {
				return n, err
			}
			n += k
		}
	}
	return n, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// userDeps lists the user objects (other than the table itself, its
// sequences and types, which are created) that a default or constraint
// depends on, described for the operator.
func (m *schemaMaker) userDeps(ctx context.Context, class string, objOID, tableOID uint32) ([]string, error) {
	rows, err := m.origin.Query(ctx, `
SELECT pg_describe_object(d.refclassid, d.refobjid, 0)
  FROM pg_depend d
 WHERE d.classid = $1::regclass AND d.objid = $2 AND d.deptype = 'n' AND d.refobjid >= 16384
   AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = $3)
   AND NOT (d.refclassid = 'pg_class'::regclass AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.refobjid AND s.relkind = 'S'))
   AND d.refclassid <> 'pg_type'::regclass
 ORDER BY 1`, "pg_catalog."+class, objOID, tableOID)
	if err != nil {
		return nil, fmt.Errorf("origin: read dependencies: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// defaultDeps decides whether a column default can be created on the
// replica: the types and sequences it uses are created (sequences owned by
// the column get their OWNED BY, returned to run after the table); if it
// uses anything else (a user function), it is left out with a note.
func (m *schemaMaker) defaultDeps(ctx context.Context, defOID, tableOID uint32, t pg.Table, col string) (bool, []string, error) {
	deps, err := m.userDeps(ctx, "pg_attrdef", defOID, tableOID)
	if err != nil {
		return false, nil, err
	}
	if len(deps) > 0 {
		m.lines = append(m.lines, fmt.Sprintf("replica %s: %s: default of column %s not created (it uses %s)",
			m.name, t, pgx.Identifier{col}.Sanitize(), strings.Join(deps, ", ")))
		return false, nil, nil
	}
	rows, err := m.origin.Query(ctx, `
SELECT d.refclassid = 'pg_type'::regclass, d.refobjid
  FROM pg_depend d
 WHERE d.classid = 'pg_attrdef'::regclass AND d.objid = $1 AND d.deptype = 'n' AND d.refobjid >= 16384
   AND (d.refclassid = 'pg_type'::regclass
        OR EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.refobjid AND s.relkind = 'S'))`, defOID)
	if err != nil {
		return false, nil, fmt.Errorf("origin: read dependencies: %w", err)
	}
	type dep struct {
		isType bool
		oid    uint32
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dep, error) {
		var d dep
		return d, r.Scan(&d.isType, &d.oid)
	})
	if err != nil {
		return false, nil, fmt.Errorf("origin: read dependencies: %w", err)
	}
	var owned []string
	for _, d := range ds {
		if d.isType {
			if err := m.ensureType(ctx, d.oid); err != nil {
				return false, nil, err
			}
			continue
		}
		own, err := m.ensureSequence(ctx, d.oid, tableOID, t)
		if err != nil {
			return false, nil, err
		}
		if own != "" {
			owned = append(owned, own)
		}
	}
	return true, owned, nil
}

// ensureSequence creates a sequence a default uses when the replica lacks
// it, and returns its OWNED BY statement when the origin's belongs to a
// column of the table being created.
func (m *schemaMaker) ensureSequence(ctx context.Context, seqOID, tableOID uint32, t pg.Table) (string, error) {
	if m.sequences[seqOID] {
		return "", nil
	}
	m.sequences[seqOID] = true
	var name, schema, create string
	var owned *string
	err := m.origin.QueryRow(ctx, `
SELECT format('%I.%I', n.nspname, c.relname), n.nspname,
       format('CREATE SEQUENCE %I.%I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
              n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax,
              s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END),
       (SELECT format('ALTER SEQUENCE %I.%I OWNED BY %s.%I', n.nspname, c.relname, $3::text, a.attname)
          FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refobjid = $2 AND d.deptype = 'a')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
 WHERE c.oid = $1`, seqOID, tableOID, t.Ident()).Scan(&name, &schema, &create, &owned)
	if err != nil {
		return "", fmt.Errorf("origin: read sequence: %w", err)
	}
	var exists bool
	if err := m.replica.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up sequence %s: %w", name, err)
	}
	if exists {
		return "", nil
	}
	if err := m.ensureSchema(ctx, schema); err != nil {
		return "", err
	}
	if err := m.exec(ctx, create); err != nil {
		return "", err
	}
	if owned == nil {
		return "", nil
	}
	return *owned, nil
}

// ensureType makes sure the replica has a type a column uses: built-in
// types are there; arrays follow their element type; enum, domain and
// composite types are created from the origin's definitions; any other
// type must be created by the operator.
func (m *schemaMaker) ensureType(ctx context.Context, oid uint32) error {
	if m.types[oid] {
		return nil
	}
	m.types[oid] = true
	var name, schema, typtype, category string
	var elem, base, relid uint32
	var ext *string
	var relkind *string
	err := m.origin.QueryRow(ctx, `
SELECT format_type(t.oid, NULL), n.nspname, t.typtype::text, t.typcategory::text, t.typelem, t.typbasetype, t.typrelid,
       (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'),
       (SELECT c.relkind::text FROM pg_class c WHERE c.oid = t.typrelid)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`, oid).
		Scan(&name, &schema, &typtype, &category, &elem, &base, &relid, &ext, &relkind)
	if err != nil {
		return fmt.Errorf("origin: read type %d: %w", oid, err)
	}
	if schema == "pg_catalog" || schema == "information_schema" {
		return nil
	}
	if category == "A" && elem != 0 {
		return m.ensureType(ctx, elem)
	}
	var exists bool
	if err := m.replica.QueryRow(ctx, "SELECT to_regtype($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up type %s: %w", name, err)
	}
	if exists {
		return nil
	}
	missing := &typeError{msg: fmt.Sprintf("type %s does not exist there; create it first", name)}
	if ext != nil {
		missing.msg = fmt.Sprintf("type %s does not exist there; create it first (CREATE EXTENSION %s)", name, pgx.Identifier{*ext}.Sanitize())
		return missing
	}
	var ddl string
	switch {
	case typtype == "e":
		err = m.origin.QueryRow(ctx, `
SELECT format('CREATE TYPE %s AS ENUM (%s)', format_type($1, NULL),
              coalesce(string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder), ''))
  FROM pg_enum WHERE enumtypid = $1`, oid).Scan(&ddl)
	case typtype == "d":
		if err := m.ensureType(ctx, base); err != nil {
			return err
		}
		err = m.origin.QueryRow(ctx, `
SELECT format('CREATE DOMAIN %s AS %s', format_type(t.oid, NULL), format_type(t.typbasetype, t.typtypmod))
       || coalesce((SELECT format(' COLLATE %I.%I', cn.nspname, co.collname)
                      FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                     WHERE co.oid = t.typcollation AND t.typcollation <> b.typcollation), '')
       || coalesce(' DEFAULT ' || t.typdefault, '')
       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce((SELECT string_agg(format(' CONSTRAINT %I %s', conname, pg_get_constraintdef(oid)), '' ORDER BY conname)
                      FROM pg_constraint WHERE contypid = t.oid AND contype = 'c'), '')
  FROM pg_type t JOIN pg_type b ON b.oid = t.typbasetype WHERE t.oid = $1`, oid).Scan(&ddl)
	case typtype == "c" && relkind != nil && *relkind == "c":
		rows, qerr := m.origin.Query(ctx, `SELECT atttypid FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, relid)
		if qerr != nil {
			return fmt.Errorf("origin: read type %s: %w", name, qerr)
		}
		attrs, qerr := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if qerr != nil {
			return fmt.Errorf("origin: read type %s: %w", name, qerr)
		}
		for _, a := range attrs {
			if err := m.ensureType(ctx, a); err != nil {
				return err
			}
		}
		err = m.origin.QueryRow(ctx, `
SELECT format('CREATE TYPE %s AS (%s)', format_type($1, NULL),
              string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                         || coalesce((SELECT format(' COLLATE %I.%I', cn.nspname, co.collname)
                                        FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                       WHERE co.oid = a.attcollation AND a.attcollation <> at.typcollation), ''),
                         ', ' ORDER BY a.attnum))
  FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
 WHERE a.attrelid = $2 AND a.attnum > 0 AND NOT a.attisdropped`, oid, relid).Scan(&ddl)
	default:
		return missing
	}
	if err != nil {
		return fmt.Errorf("origin: read type %s: %w", name, err)
	}
	if err := m.ensureSchema(ctx, schema); err != nil {
		return err
	}
	if err := m.exec(ctx, ddl); err != nil {
		return err
	}
	m.lines = append(m.lines, fmt.Sprintf("replica %s: created type %s", m.name, name))
	return nil
}
