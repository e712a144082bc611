package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Sequence is a sequence of a captured table (serial, identity, a
// default's nextval) and where it stands on the origin and each replica;
// the engine carries its value in the log (pgreplica.log_sequences).
type Sequence struct {
	Name     string
	Table    pg.Table
	Origin   *int64            // nil when never used, or not readable
	Replicas map[string]*int64 // by replica name; nil value when absent or never used
}

// ReadSequences reads the captured tables' sequences on the origin and on
// every connected replica (a replica that cannot be read is left out).
func ReadSequences(ctx context.Context, cfg *config.Config) ([]Sequence, error) {
	origin, err := pg.ConnectOrigin(ctx, cfg, "tables "+cfg.Name)
	if err != nil {
		return nil, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	if err := requireOrigin(ctx, origin); err != nil {
		return nil, err
	}
	rows, err := origin.Query(ctx, `
SELECT pgreplica.table_name(s.seq), n.nspname, c.relname,
       CASE WHEN has_sequence_privilege(s.seq, 'SELECT') THEN pg_sequence_last_value(s.seq) END
  FROM pgreplica.captured_sequences() s
  CROSS JOIN LATERAL (
        SELECT d.refobjid AS rel FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seq AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i')
        UNION ALL
        SELECT ad.adrelid FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refobjid = s.seq
        LIMIT 1) o
  JOIN pg_class c ON c.oid = o.rel JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("origin: read sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sequence, error) {
		s := Sequence{Replicas: map[string]*int64{}}
		return s, r.Scan(&s.Name, &s.Table.Schema, &s.Table.Name, &s.Origin)
	})
	if err != nil {
		return nil, fmt.Errorf("origin: read sequences: %w", err)
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	names := make([]string, len(seqs))
	for i, s := range seqs {
		names[i] = s.Name
	}
	for _, r := range cfg.Connected() {
		conn, err := pg.ConnectReplica(ctx, r, "tables "+cfg.Name)
		if err != nil {
			continue
		}
		rows, err := conn.Query(ctx, `
SELECT CASE WHEN to_regclass(x.n) IS NULL THEN NULL
            WHEN has_sequence_privilege(to_regclass(x.n), 'SELECT') THEN pg_sequence_last_value(to_regclass(x.n)) END
  FROM unnest($1::text[]) WITH ORDINALITY AS x(n, i) ORDER BY x.i`, names)
		if err == nil {
			vals, err := pgx.CollectRows(rows, pgx.RowTo[*int64])
			if err == nil {
				for i, v := range vals {
					seqs[i].Replicas[r.Name] = v
				}
			}
		}
		conn.Close(context.WithoutCancel(ctx))
	}
	return seqs, nil
}
