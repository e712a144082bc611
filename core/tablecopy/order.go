package tablecopy

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// Foreign keys on the replica between tables of one copy: a table is
// copied only after the tables it references have been (all at the same
// origin snapshot, so every row it references is there). Without that, a
// replica restored with pg_dump -s refuses the copy of a child whose
// parent is not copied yet, when the apply role cannot switch foreign-key
// checks off (session_replication_role needs a superuser or, on 15+, a
// GRANT SET ON PARAMETER).

// readReferences fills in, for each table of the copy, the other tables of
// the copy that it references by a foreign key on the replica.
func readReferences(ctx context.Context, replica *pgx.Conn, infos []*tableInfo) error {
	byName := make(map[pg.Table]*tableInfo, len(infos))
	names := make([]string, len(infos))
	for i, ti := range infos {
		byName[ti.target] = ti
		names[i] = ti.target.Ident()
	}
	rows, err := replica.Query(ctx, `
SELECT cn.nspname, c.relname, pn.nspname, p.relname
  FROM pg_constraint f
  JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE f.contype = 'f' AND f.conrelid <> f.confrelid
   AND f.conrelid IN (SELECT to_regclass(n) FROM unnest($1::text[]) n)`, names)
	if err != nil {
		return fmt.Errorf("read the replica's foreign keys: %w", err)
	}
	for rows.Next() {
		var child, parent pg.Table
		if err := rows.Scan(&child.Schema, &child.Name, &parent.Schema, &parent.Name); err != nil {
			return fmt.Errorf("read the replica's foreign keys: %w", err)
		}
		if c, p := byName[child], byName[parent]; c != nil && p != nil && !slices.Contains(c.refs, p) {
			c.refs = append(c.refs, p)
		}
	}
	return rows.Err()
}

// orderForCopy sorts tables parents first (by depth in the foreign-key
// graph), largest first within a depth. A table in a cycle of foreign keys
// is not waited for by the others of the cycle (nothing could go first).
func orderForCopy(infos []*tableInfo) {
	depth := make(map[*tableInfo]int, len(infos))
	var visit func(ti *tableInfo, path map[*tableInfo]bool) int
	visit = func(ti *tableInfo, path map[*tableInfo]bool) int {
		if d, ok := depth[ti]; ok {
			return d
		}
		path[ti] = true
		d := 0
		kept := ti.refs[:0]
		for _, p := range ti.refs {
			if path[p] {
				continue // a cycle: do not wait for it
			}
			kept = append(kept, p)
			d = max(d, visit(p, path)+1)
		}
		ti.refs = kept
		delete(path, ti)
		depth[ti] = d
		return d
	}
	for _, ti := range infos {
		visit(ti, map[*tableInfo]bool{})
	}
	slices.SortStableFunc(infos, func(a, b *tableInfo) int {
		if c := cmp.Compare(depth[a], depth[b]); c != 0 {
			return c
		}
		if c := cmp.Compare(b.size, a.size); c != 0 {
			return c
		}
		return cmp.Compare(a.table.String(), b.table.String())
	})
}

// waitForReferences waits until the tables ti references are copied.
func waitForReferences(ctx context.Context, ti *tableInfo) error {
	for _, p := range ti.refs {
		select {
		case <-p.copied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
