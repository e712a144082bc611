package demo

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Difference is one table that differs between the origin and a replica.
type Difference struct {
	Replica string
	Table   pg.Table
	// Detail is the first difference found: a row missing on one side or
	// different, shown by its key.
	Detail string
}

// Comparison is the result of Compare.
type Comparison struct {
	Tables      int
	Rows        int64 // origin rows compared
	Differences []Difference
}

// Equal reports whether no difference was found.
func (c Comparison) Equal() bool { return len(c.Differences) == 0 }

// Compare reads every table in tables on the origin and on each replica in
// key order and compares them row by row (as jsonb text in UTC, so
// numeric, timestamptz and text compare exactly).
func Compare(ctx context.Context, cfg *config.Config, tables []pg.Table) (Comparison, error) {
	var res Comparison
	origin, err := pg.ConnectOrigin(ctx, cfg, "compare")
	if err != nil {
		return res, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	infos, err := capture.ListTables(ctx, origin, func(string, string) bool { return true })
	if err != nil {
		return res, err
	}
	keys := map[pg.Table][]string{}
	for _, t := range infos {
		keys[t.Table] = t.Key
	}
	replicas := make([]*pgx.Conn, len(cfg.Replicas))
	for i, r := range cfg.Replicas {
		c, err := pg.ConnectReplica(ctx, r, "compare")
		if err != nil {
			return res, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		replicas[i] = c
	}
	for _, c := range append([]*pgx.Conn{origin}, replicas...) {
		if _, err := c.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
			return res, err
		}
	}
	for _, t := range tables {
		key, ok := keys[t]
		if !ok {
			return res, fmt.Errorf("origin has no table %s", t)
		}
		q := selectSQL(t, key)
		want, err := readRows(ctx, origin, q)
		if err != nil {
			return res, fmt.Errorf("origin: %w", err)
		}
		res.Tables++
		res.Rows += int64(len(want))
		for i, rc := range replicas {
			got, err := readRows(ctx, rc, q)
			if err != nil {
				return res, fmt.Errorf("replica %s: %w", cfg.Replicas[i].Name, err)
			}
			if d := diff(want, got); d != "" {
				res.Differences = append(res.Differences, Difference{Replica: cfg.Replicas[i].Name, Table: t, Detail: d})
			}
		}
	}
	return res, nil
}

func selectSQL(t pg.Table, key []string) string {
	order := "1"
	if len(key) > 0 {
		parts := make([]string, len(key))
		for i, k := range key {
			parts[i] = "t." + pgx.Identifier{k}.Sanitize()
		}
		order = strings.Join(parts, ", ")
		return fmt.Sprintf("SELECT jsonb_build_array(%s)::text, to_jsonb(t)::text FROM %s t ORDER BY %s", order, t.Ident(), order)
	}
	return fmt.Sprintf("SELECT to_jsonb(t)::text, to_jsonb(t)::text FROM %s t ORDER BY 1", t.Ident())
}

type row struct{ key, data string }

func readRows(ctx context.Context, c *pgx.Conn, q string) ([]row, error) {
	rows, err := c.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.key, &x.data)
		return x, err
	})
}

// diff walks two key-ordered row lists and describes the first difference.
func diff(want, got []row) string {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j >= len(got):
			return fmt.Sprintf("%d rows, replica %d: key %s missing on the replica", len(want), len(got), want[i].key)
		case i >= len(want):
			return fmt.Sprintf("%d rows, replica %d: key %s only on the replica", len(want), len(got), got[j].key)
		case want[i].key == got[j].key:
			if want[i].data != got[j].data {
				return fmt.Sprintf("key %s differs: origin %s, replica %s", want[i].key, want[i].data, got[j].data)
			}
			i++
			j++
		default:
			// Rows come in the same key order on both sides; a mismatch
			// means a row is missing on one side. Decide which by
			// looking ahead for the key.
			if contains(got[j:], want[i].key) {
				return fmt.Sprintf("key %s only on the replica", got[j].key)
			}
			return fmt.Sprintf("key %s missing on the replica", want[i].key)
		}
	}
	return ""
}

func contains(rows []row, key string) bool {
	for _, r := range rows {
		if r.key == key {
			return true
		}
	}
	return false
}
