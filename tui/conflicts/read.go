package conflicts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// Read reads the recorded conflicts of the set from every replica; a
// replica that cannot be read is reported in errs, not fatal.
func Read(ctx context.Context, cfg *config.Config) (out []Conflict, errs []error) {
	for _, r := range cfg.Replicas {
		cs, err := readReplica(ctx, cfg.Name, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, cs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, errs
}

func readReplica(ctx context.Context, set string, r config.Replica) ([]Conflict, error) {
	conn, err := pg.ConnectReplica(ctx, r, "tui")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT id, event_id, txid, schema_name, table_name, op::text,
	       coalesce(key::text, ''), coalesce(data::text, ''), kind, detected_at
	  FROM pgreplica.conflict WHERE set_name = $1 ORDER BY id DESC LIMIT $2`, set, Limit)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return nil, nil // not installed there yet: no conflicts
		}
		return nil, fmt.Errorf("replica %s: read conflicts: %w", r.Name, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Conflict, error) {
		c := Conflict{Replica: r.Name}
		err := row.Scan(&c.ID, &c.EventID, &c.Txid, &c.Table.Schema, &c.Table.Name, &c.Op, &c.Key, &c.Data, &c.Kind, &c.At)
		return c, err
	})
}

// ReplicaRow reads the replica's current row for a conflict's key, as
// column -> text value; nil when there is no such row.
func ReplicaRow(ctx context.Context, cfg *config.Config, c Conflict) (map[string]string, error) {
	r, err := cfg.Replica(c.Replica)
	if err != nil {
		return nil, err
	}
	var key map[string]any
	if err := json.Unmarshal([]byte(c.Key), &key); err != nil || len(key) == 0 {
		return nil, fmt.Errorf("conflict %d has no key", c.ID)
	}
	conn, err := pg.ConnectReplica(ctx, r, "tui")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var data *string
	err = conn.QueryRow(ctx, fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %s t
	  WHERE to_jsonb(t) @> $1::jsonb LIMIT 1`, c.Table.Ident()), c.Key).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replica %s: read %s: %w", r.Name, c.Table, err)
	}
	return flatten(*data), nil
}

// flatten turns a JSON object into column -> text.
func flatten(s string) map[string]string {
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
