package tablecopy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// The seams through which core/bundle writes a base bundle with the same
// copy as sync: the same session settings, columns and sequences.

// OriginSettings are the session settings of an origin connection that
// copies rows: text forms exact and independent of the server's defaults.
var OriginSettings = originSettings

// ReplicaSettings are those of the replica connection that loads them.
var ReplicaSettings = replicaSettings

// CopyColumns returns the names of the columns of an origin table that a
// copy carries (not the generated ones), in column order, and whether the
// table is partitioned (then its rows are read with COPY (SELECT ...)).
func CopyColumns(ctx context.Context, tx pgx.Tx, t pg.Table) (cols []string, partitioned bool, err error) {
	var kind string
	err = tx.QueryRow(ctx, `
SELECT c.relkind::text, (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
  FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident()).Scan(&kind, &cols)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("origin has no table %s", t)
	}
	if err != nil {
		return nil, false, fmt.Errorf("origin: read columns of %s: %w", t, err)
	}
	return cols, kind == "p", nil
}

// Sequence is the value of a sequence owned by a column (serial, identity).
type Sequence struct {
	Column string
	Value  int64
}

// OwnedSequences reads the current values of the sequences owned by a
// table's columns.
func OwnedSequences(ctx context.Context, q pgx.Tx, t pg.Table) ([]Sequence, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname::text, ps.last_value
  FROM pg_depend d
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = s.relname
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.refobjid = to_regclass($1) AND d.deptype IN ('a', 'i') AND ps.last_value IS NOT NULL`, t.Ident())
	if err != nil {
		return nil, fmt.Errorf("origin: read sequences of %s: %w", t, err)
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sequence, error) {
		var s Sequence
		return s, r.Scan(&s.Column, &s.Value)
	})
	if err != nil {
		return nil, fmt.Errorf("origin: read sequences of %s: %w", t, err)
	}
	return seqs, nil
}

// SetSequence sets the replica's sequence owned by a column of t to the
// origin's value, so that a replica promoted to origin does not hand out
// used values.
func SetSequence(ctx context.Context, tx pgx.Tx, t pg.Table, s Sequence) error {
	if _, err := tx.Exec(ctx, `SELECT setval(s, $3) FROM pg_get_serial_sequence($1, $2) AS s WHERE s IS NOT NULL`,
		t.Ident(), s.Column, s.Value); err != nil {
		return fmt.Errorf("set the sequence of column %s: %w", pgx.Identifier{s.Column}.Sanitize(), err)
	}
	return nil
}
