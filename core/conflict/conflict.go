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
	"strings"
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
	// On a multi-master set (Replica is then the direction, "a->b"): the
	// row found on the target and the versions of both sides, the policy,
	// the winning version, whether the remote change was applied or the
	// local row kept, and when and how an operator reviewed it.
	LocalRow, LocalVersion, RemoteVersion, Winner string // JSON; "" when none
	Policy, Outcome, Review                       string
	ReviewedAt                                    *time.Time
}

// Limit is how many conflicts are read per replica (newest first).
const Limit = 500

// List reads the recorded conflicts of the set from every replica (or only
// the one named replica, when not ""), newest first; a replica that cannot
// be read is reported in errs, not fatal. purpose names the sessions.
func List(ctx context.Context, cfg *config.Config, replica, purpose string) (out []Conflict, errs []error) {
	for _, d := range cfg.Directions("") {
		for _, r := range d.Replicas {
			name := r.Name
			if d.Source != "" {
				name = config.DirectionLabel(d.Source, r.Name)
			}
			if replica != "" && name != replica && r.Name != replica {
				continue
			}
			cs, err := readReplica(ctx, d.Name, r, purpose)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for i := range cs {
				cs[i].Replica = name
			}
			out = append(out, cs...)
		}
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
	       coalesce(key::text, ''), coalesce(data::text, ''), kind, detected_at,
	       coalesce(to_jsonb(c)->>'local_row', ''), coalesce(to_jsonb(c)->>'local_version', ''),
	       coalesce(to_jsonb(c)->>'remote_version', ''), coalesce(to_jsonb(c)->>'winner', ''),
	       coalesce(to_jsonb(c)->>'policy', ''), coalesce(to_jsonb(c)->>'outcome', ''), coalesce(to_jsonb(c)->>'review', ''),
	       (to_jsonb(c)->>'reviewed_at')::timestamptz
	  FROM pgreplica.conflict c WHERE set_name = $1 ORDER BY id DESC LIMIT $2`, set, Limit)
	if err != nil {
		if pg.IsUndefinedTable(err) {
			return nil, nil // not installed there yet: no conflicts
		}
		return nil, fmt.Errorf("replica %s: read conflicts: %w", r.Name, err)
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Conflict, error) {
		c := Conflict{Replica: r.Name}
		err := row.Scan(&c.ID, &c.EventID, &c.Txid, &c.Table.Schema, &c.Table.Name, &c.Op, &c.Key, &c.Data, &c.Kind, &c.At,
			&c.LocalRow, &c.LocalVersion, &c.RemoteVersion, &c.Winner, &c.Policy, &c.Outcome, &c.Review, &c.ReviewedAt)
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
	r, err := replicaOf(cfg, c.Replica)
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
			r, err := replicaOf(cfg, c.Replica)
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

// replicaOf is the database a conflict was recorded on: the replica, or on
// a multi-master set the target node of the direction ("a->b": b).
func replicaOf(cfg *config.Config, name string) (config.Replica, error) {
	if !cfg.MultiMaster() {
		return cfg.Replica(name)
	}
	_, to, ok := strings.Cut(name, "->")
	if !ok {
		to = name
	}
	n, err := cfg.Node(to)
	if err != nil {
		return config.Replica{}, err
	}
	return config.Replica{Name: n.Name, DSN: n.DSN}, nil
}
