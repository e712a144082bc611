package conflict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// The choices of Resolve.
const (
	Keep  = "keep"  // the outcome stands
	Other = "other" // the version that lost is written again, and wins
)

// summarised is how the ledger shows a value too large to copy.
var summarised = regexp.MustCompile(`^<\d+ bytes, md5 [0-9a-f]{32}>$`)

// Resolve settles a conflict of a multi-master set, as List returned it:
// Keep leaves the outcome as it is; Other writes the version that lost
// (the local row when the remote change was applied, the remote row when
// the local one was kept; a row that was not there is deleted) on the node
// that recorded the conflict, as an ordinary change: it is captured, newer
// than every version the nodes have, and so reaches and wins on every
// node. Either way the conflict is marked reviewed on every node that
// recorded it. It returns what it did, in words.
func Resolve(ctx context.Context, cfg *config.Config, c Conflict, choice, purpose string) (string, error) {
	if !cfg.MultiMaster() || c.Outcome == "" {
		return "", errors.New("only a multi-master set's conflicts are resolved: a one-way replica follows its origin (fix the row there)")
	}
	if choice != Keep && choice != Other {
		return "", fmt.Errorf("want %s or %s (got %q)", Keep, Other, choice)
	}
	did := fmt.Sprintf("conflict %d on %s: kept the outcome (%s)", c.ID, c.Replica, c.Outcome)
	if choice == Other {
		row := c.LocalRow
		if c.Outcome == "kept" {
			row = c.Data
		}
		r, err := replicaOf(cfg, c.Replica)
		if err != nil {
			return "", err
		}
		conn, err := pg.ConnectReplica(ctx, r, purpose)
		if err != nil {
			return "", err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := writeRow(ctx, conn, c.Table, c.Key, row); err != nil {
			return "", fmt.Errorf("node %s: %w", r.Name, err)
		}
		if row == "" {
			did = fmt.Sprintf("conflict %d on %s: deleted %s %s on node %s, as the other version had it; the change reaches every node", c.ID, c.Replica, c.Table, c.Key, r.Name)
		} else {
			did = fmt.Sprintf("conflict %d on %s: wrote the other version of %s %s on node %s; the change reaches every node", c.ID, c.Replica, c.Table, c.Key, r.Name)
		}
	}
	for _, n := range cfg.Nodes {
		conn, err := pg.ConnectReplica(ctx, config.Replica{Name: n.Name, DSN: n.DSN}, purpose)
		if err != nil {
			return did, fmt.Errorf("%s; marking it reviewed on node %s: %w", did, n.Name, err)
		}
		_, err = conn.Exec(ctx, `UPDATE pgreplica.conflict SET reviewed_at = now(), review = $5
		                          WHERE schema_name = $1 AND table_name = $2 AND key = $3::jsonb AND winner = $4::jsonb AND reviewed_at IS NULL`,
			c.Table.Schema, c.Table.Name, c.Key, c.Winner, choice)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return did, fmt.Errorf("%s; marking it reviewed on node %s: %w", did, n.Name, err)
		}
	}
	return did, nil
}

// writeRow makes the table's row for key the row image (its captured
// form), or deletes it when row is "".
func writeRow(ctx context.Context, conn *pgx.Conn, t pg.Table, key, row string) error {
	rows, err := conn.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
	                                     coalesce(nullif(ty.typbasetype, 0), ty.oid) IN ('json'::regtype, 'jsonb'::regtype),
	                                     a.attname = ANY (pgreplica.key_columns(a.attrelid))
	                                FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
	                               WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
	                               ORDER BY a.attnum`, t.Ident())
	if err != nil {
		return fmt.Errorf("columns of %s: %w", t, err)
	}
	type col struct {
		name, typ  string
		json, isPK bool
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.name, &c.typ, &c.json, &c.isPK)
	})
	if err != nil {
		return fmt.Errorf("columns of %s: %w", t, err)
	}
	var names, defs, vals, keys, match, sets []string
	for _, c := range cols {
		id := pgx.Identifier{c.name}.Sanitize()
		typ, val := c.typ, "n."+id
		if c.json {
			typ, val = "text", val+"::"+c.typ
		}
		names, defs, vals = append(names, id), append(defs, id+" "+typ), append(vals, val)
		if c.isPK {
			keys = append(keys, id)
			match = append(match, "t."+id+" = "+val)
		} else {
			sets = append(sets, id+" = EXCLUDED."+id)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("%s has no key", t)
	}
	if row == "" {
		_, err := conn.Exec(ctx, fmt.Sprintf("DELETE FROM %s AS t USING jsonb_to_record($1::jsonb) AS n(%s) WHERE %s",
			t.Ident(), strings.Join(defs, ", "), strings.Join(match, " AND ")), key)
		return err
	}
	var img map[string]json.RawMessage
	if err := json.Unmarshal([]byte(row), &img); err != nil {
		return fmt.Errorf("the other version is not a row: %w", err)
	}
	for k, v := range img {
		var s string
		if json.Unmarshal(v, &s) == nil && summarised.MatchString(s) {
			return fmt.Errorf("the other version's %s was too large to keep in the ledger (%s): resolve this row by hand", pg.Name(k), s)
		}
	}
	conflictAction := "DO NOTHING"
	if len(sets) > 0 {
		conflictAction = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM jsonb_to_record($1::jsonb) AS n(%s) ON CONFLICT (%s) %s",
		t.Ident(), strings.Join(names, ", "), strings.Join(vals, ", "), strings.Join(defs, ", "), strings.Join(keys, ", "), conflictAction), row)
	return err
}
