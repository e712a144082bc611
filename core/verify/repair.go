package verify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// repair makes the replica's differing rows equal to the origin's, in the
// aligned replica transaction: extra rows are deleted, missing ones
// inserted and different ones updated with the origin's values at the
// aligned snapshot. Values travel as their text forms, read and written
// with the same session settings, which every type reads back exactly.
func (c *comparison) repair(ctx context.Context, otx, rtx pgx.Tx) (Repaired, error) {
	var rep Repaired
	res := c.res

	// Key columns as text arrays, one per column, for unnest.
	keyArrays := func(p *params, keys []Key) []string {
		cols := make([][]string, len(c.keyCols))
		for _, k := range keys {
			for i, v := range k.Values {
				cols[i] = append(cols[i], v)
			}
		}
		refs := make([]string, len(cols))
		for i, vals := range cols {
			refs[i] = p.add(vals) + "::text[]"
		}
		return refs
	}
	unnestAs := func(refs []string) string {
		names := make([]string, len(refs))
		for i := range refs {
			names[i] = "k" + strconv.Itoa(i)
		}
		return "unnest(" + strings.Join(refs, ", ") + ") AS u(" + strings.Join(names, ", ") + ")"
	}
	keyMatch := func(s *side, alias func(i int) string) string {
		parts := make([]string, len(c.keyCols))
		for i, k := range c.keyCols {
			parts[i] = "t." + pgx.Identifier{k}.Sanitize() + " = " + alias(i) + "::" + s.keyTypes[i]
		}
		return strings.Join(parts, " AND ")
	}

	if len(res.Extra) > 0 {
		var p params
		refs := keyArrays(&p, res.Extra)
		sql := "DELETE FROM " + c.r.from + " USING " + unnestAs(refs) + " WHERE " +
			keyMatch(c.r, func(i int) string { return "u.k" + strconv.Itoa(i) })
		tag, err := rtx.Exec(ctx, sql, p.args...)
		if err != nil {
			return rep, fmt.Errorf("delete extra rows: %w", err)
		}
		rep.Deleted = tag.RowsAffected()
	}

	// The origin's rows of the missing and different keys, as JSON arrays
	// of the columns' text forms.
	fetch := func(keys []Key) (string, error) {
		if len(keys) == 0 {
			return "", nil
		}
		var p params
		refs := keyArrays(&p, keys)
		vals := make([]string, len(c.cols))
		for i, col := range c.cols {
			vals[i] = "t." + pgx.Identifier{col}.Sanitize() + "::text"
		}
		sql := "SELECT to_jsonb(ARRAY[" + strings.Join(vals, ", ") + "]::text[])::text FROM " + c.o.from +
			" JOIN " + unnestAs(refs) + " ON " + keyMatch(c.o, func(i int) string { return "u.k" + strconv.Itoa(i) })
		rows, err := otx.Query(ctx, sql, p.args...)
		if err != nil {
			return "", fmt.Errorf("origin: read rows: %w", err)
		}
		list, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", fmt.Errorf("origin: read rows: %w", err)
		}
		return "[" + strings.Join(list, ",") + "]", nil
	}
	// value is column i of a JSON row e, cast to the replica's type.
	value := func(i int) string {
		return "(e ->> " + strconv.Itoa(i) + ")::" + c.r.colTypes[c.cols[i]]
	}

	if len(res.Missing) > 0 {
		data, err := fetch(res.Missing)
		if err != nil {
			return rep, err
		}
		names := make([]string, len(c.cols))
		vals := make([]string, len(c.cols))
		for i, col := range c.cols {
			names[i] = pgx.Identifier{col}.Sanitize()
			vals[i] = value(i)
		}
		sql := "INSERT INTO " + c.r.table + " (" + strings.Join(names, ", ") + ") OVERRIDING SYSTEM VALUE SELECT " +
			strings.Join(vals, ", ") + " FROM jsonb_array_elements($1::jsonb) AS e"
		tag, err := rtx.Exec(ctx, sql, data)
		if err != nil {
			return rep, fmt.Errorf("insert missing rows: %w", err)
		}
		rep.Inserted = tag.RowsAffected()
	}

	if len(res.Different) > 0 {
		data, err := fetch(res.Different)
		if err != nil {
			return rep, err
		}
		var sets []string
		for i, col := range c.cols {
			if !slices.Contains(c.keyCols, col) {
				sets = append(sets, pgx.Identifier{col}.Sanitize()+" = "+value(i))
			}
		}
		if len(sets) > 0 {
			colIdx := func(k int) string {
				return "(e ->> " + strconv.Itoa(slices.Index(c.cols, c.keyCols[k])) + ")"
			}
			sql := "UPDATE " + c.r.from + " SET " + strings.Join(sets, ", ") +
				" FROM jsonb_array_elements($1::jsonb) AS e WHERE " + keyMatch(c.r, colIdx)
			tag, err := rtx.Exec(ctx, sql, data)
			if err != nil {
				return rep, fmt.Errorf("update different rows: %w", err)
			}
			rep.Updated = tag.RowsAffected()
		}
	}
	return rep, nil
}
