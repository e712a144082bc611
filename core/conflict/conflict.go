// Package conflict reads the conflict ledger (pgreplica.conflict) of a
// set's replicas: the UPDATEs and DELETEs that found no row there and were
// applied as no-ops, with the replica's current row for each.
package conflict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Conflict is one row of pgreplica.conflict on a replica.
type Conflict struct {
	Replica string
	ID      int64
	EventID int64
	Txid    string
	Table   pg.Table
	Op      string // I, U, D
	Key     string // JSON
	Data    string // JSON, the captured row
	Kind    string
	At      time.Time
}

// Limit is how many conflicts are read per replica (newest first).
const Limit = 500

// List reads the recorded conflicts of the set from every replica (or only
// the one named replica, when not ""), newest first; a replica that cannot
// be read is reported in errs, not fatal. purpose names the sessions.
func List(ctx context.Context, cfg *config.Config, replica, purpose string) (out []Conflict, errs []error) {
	for _, r := range cfg.Replicas {
		if replica != "" && r.Name != replica {
			continue
		}
		cs, err := readReplica(ctx, cfg.Name, r, purpose)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, cs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, errs
}

func readReplica(ctx context.Context, set string, r config.Replica, purpose string) ([]Conflict, error) {
	conn, err := pg.ConnectReplica(ctx, r, purpose)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT id, event_id, txid, schema_name, table_name, op::text,
	       coalesce(key::text, ''), coalesce(data::text, ''), kind, detected_at
	  FROM pgreplica.conflict WHERE set_name = $1 ORDER BY id DESC LIMIT $2`, set, Limit)
	if err != nil {
		if pg.IsUndefinedTable(err) {
			return nil, nil // not installed there yet: no conflicts
		}
		return nil, fmt.Errorf("replica %s: read conflicts: %w", r.Name, err)
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Conflict, error) {
		c := Conflict{Replica: r.Name}
		err := row.Scan(&c.ID, &c.EventID, &c.Txid, &c.Table.Schema, &c.Table.Name, &c.Op, &c.Key, &c.Data, &c.Kind, &c.At)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("replica %s: read conflicts: %w", r.Name, err)
	}
	return cs, nil
}

// CurrentRow reads the replica's current row for a conflict's key, as
// column -> text value; nil when there is no such row.
func CurrentRow(ctx context.Context, cfg *config.Config, c Conflict, purpose string) (map[string]string, error) {
	r, err := cfg.Replica(c.Replica)
	if err != nil {
		return nil, err
	}
	var key map[string]any
	if err := json.Unmarshal([]byte(c.Key), &key); err != nil || len(key) == 0 {
		return nil, fmt.Errorf("conflict %d has no key", c.ID)
	}
	conn, err := pg.ConnectReplica(ctx, r, purpose)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return currentRow(ctx, conn, r.Name, c)
}

func currentRow(ctx context.Context, conn *pgx.Conn, replica string, c Conflict) (map[string]string, error) {
	var data *string
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s t
	  WHERE to_jsonb(t) @> $1::jsonb LIMIT 1`, c.Table.Ident()), c.Key).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replica %s: read %s: %w", replica, c.Table, err)
	}
	return Flatten(*data), nil
}

// WithRows is a conflict with the replica's current row for its key (nil
// when the replica has no such row, or RowErr says why it was not read).
type WithRows struct {
	Conflict
	Current map[string]string
	RowErr  error
}

// ListWithRows is List with each conflict's current row on its replica,
// read over one connection per replica.
func ListWithRows(ctx context.Context, cfg *config.Config, replica, purpose string) ([]WithRows, []error) {
	cs, errs := List(ctx, cfg, replica, purpose)
	out := make([]WithRows, len(cs))
	conns := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	for i, c := range cs {
		out[i].Conflict = c
		conn, ok := conns[c.Replica]
		if !ok {
			r, err := cfg.Replica(c.Replica)
			if err == nil {
				conn, err = pg.ConnectReplica(ctx, r, purpose)
			}
			if err != nil {
				out[i].RowErr = err
				continue
			}
			conns[c.Replica] = conn
		}
		var key map[string]any
		if json.Unmarshal([]byte(c.Key), &key) != nil || len(key) == 0 {
			out[i].RowErr = fmt.Errorf("conflict %d has no key", c.ID)
			continue
		}
		out[i].Current, out[i].RowErr = currentRow(ctx, conn, c.Replica, c)
	}
	return out, errs
}

// Flatten turns a JSON object into column -> text.
func Flatten(s string) map[string]string {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &m) != nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var str string
		if json.Unmarshal(v, &str) == nil {
			out[k] = str
		} else {
			out[k] = string(v)
		}
	}
	return out
}
