// Package demo runs pgreplica on two throwaway local clusters: a small
// sample shop on the origin, the same on a replica, capture installed and a
// gentle write workload, so that a newcomer sees replication happen. It
// also compares the two databases row by row.
package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/pgcluster"
	"pgreplica/core/tablecopy"
)

// Tables are the sample shop's tables.
var Tables = []pg.Table{
	{Schema: "public", Name: "customers"},
	{Schema: "public", Name: "products"},
	{Schema: "public", Name: "orders"},
	{Schema: "public", Name: "order_items"},
	{Schema: "public", Name: "Gift Cards"},
}

// Demo is a running demo: two clusters and a config for them.
type Demo struct {
	Origin, Replica *pgcluster.Cluster
	Config          *config.Config
}

// Start starts the two clusters, creates the shop with its rows on the
// origin, and syncs it to the empty replica (schema, capture, online copy). report receives one line per step.
func Start(ctx context.Context, report func(string)) (*Demo, error) {
	if _, err := pgcluster.BinDir(); err != nil {
		return nil, err
	}
	d := &Demo{}
	ok := false
	defer func() {
		if !ok {
			d.Stop()
		}
	}()
	var err error
	report("starting the origin cluster (initdb, pg_ctl) in a temporary directory…")
	if d.Origin, err = pgcluster.Start(ctx, "demo-origin", pgcluster.Options{}); err != nil {
		return nil, fmt.Errorf("start origin cluster: %w", err)
	}
	report("starting the replica cluster…")
	if d.Replica, err = pgcluster.Start(ctx, "demo-replica", pgcluster.Options{}); err != nil {
		return nil, fmt.Errorf("start replica cluster: %w", err)
	}
	odb, err := d.Origin.CreateDB(ctx, "shop")
	if err != nil {
		return nil, err
	}
	rdb, err := d.Replica.CreateDB(ctx, "shop")
	if err != nil {
		return nil, err
	}
	report(fmt.Sprintf("origin  %s", config.Describe(d.Origin.DSN(odb))))
	report(fmt.Sprintf("replica %s", config.Describe(d.Replica.DSN(rdb))))
	report("creating the sample shop (customers, products, orders, order_items, \"Gift Cards\") on the origin…")
	if err := d.Origin.Exec(ctx, odb, Schema); err != nil {
		return nil, fmt.Errorf("create schema on the origin: %w", err)
	}
	if err := d.Origin.Exec(ctx, odb, Data); err != nil {
		return nil, fmt.Errorf("load data on the origin: %w", err)
	}
	cfg, err := config.FromFlags("demo", d.Origin.DSN(odb), []string{d.Replica.DSN(rdb)})
	if err != nil {
		return nil, err
	}
	cfg.Replicas[0].Name = "replica-1"
	cfg.PollInterval = time.Second
	d.Config = cfg
	report("pgreplica sync --schema: create the tables on the empty replica, install capture, copy online…")
	err = tablecopy.Sync(ctx, cfg, tablecopy.Options{Schema: true, Report: func(line string) { report("  " + line) }},
		func(p tablecopy.Progress) {
			if p.Done {
				report(fmt.Sprintf("  copied %s: %d rows in %s", p.Table, p.Rows, p.Took.Round(time.Millisecond)))
			}
		})
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	ok = true
	return d, nil
}

// Stop stops both clusters and removes their directories.
func (d *Demo) Stop() {
	if d == nil {
		return
	}
	if d.Origin != nil {
		d.Origin.Stop()
	}
	if d.Replica != nil {
		d.Replica.Stop()
	}
}

// WorkloadStats counts what the workload did.
type WorkloadStats struct {
	Transactions int64
	Rows         int64
}

// Workload writes to the origin at about perSecond transactions a second
// until ctx ends: new orders with items, status changes, email changes,
// gift card balances and deleted orders. stats, if set, is updated after
// each transaction (read it from the same goroutine only after return, or
// use the returned total).
func Workload(ctx context.Context, dsn string, perSecond float64, onTx func(WorkloadStats)) (WorkloadStats, error) {
	var st WorkloadStats
	conn, err := pg.ConnectAs(ctx, "origin", dsn, "pgreplica demo workload")
	if err != nil {
		return st, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	every := time.Duration(float64(time.Second) / perSecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return st, nil
		case <-t.C:
		}
		n, err := oneTx(ctx, conn, rng)
		if err != nil {
			if ctx.Err() != nil {
				return st, nil
			}
			return st, fmt.Errorf("workload: %w", err)
		}
		st.Transactions++
		st.Rows += n
		if onTx != nil {
			onTx(st)
		}
	}
}

func oneTx(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) (int64, error) {
	var rows int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		exec := func(sql string, args ...any) error {
			tag, err := tx.Exec(ctx, sql, args...)
			rows += tag.RowsAffected()
			return err
		}
		switch k := rng.IntN(10); {
		case k < 4: // a new order with items
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO orders (customer_id, status, placed_at)
			    VALUES ($1, 'new', now()) RETURNING id`, 1+rng.IntN(200)).Scan(&id); err != nil {
				return err
			}
			rows++
			for l := 1; l <= 1+rng.IntN(3); l++ {
				sku := fmt.Sprintf("SKU-%04d", 1+rng.IntN(50))
				if err := exec(`INSERT INTO order_items SELECT $1, $2, sku, $3, price FROM products WHERE sku = $4`, id, l, 1+rng.IntN(3), sku); err != nil {
					return err
				}
				if err := exec(`UPDATE products SET stock = stock - 1 WHERE sku = $1`, sku); err != nil {
					return err
				}
			}
			return exec(`UPDATE orders SET total = (SELECT coalesce(sum(qty * price), 0) FROM order_items WHERE order_id = $1) WHERE id = $1`, id)
		case k < 7: // an order moves on
			return exec(`UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' WHEN 'paid' THEN 'shipped' ELSE 'delivered' END
			              WHERE id = (SELECT id FROM orders WHERE status <> 'delivered' ORDER BY random() LIMIT 1)`)
		case k < 8:
			return exec(`UPDATE customers SET email = 'c' || id || '.' || $2 || '@example.com' WHERE id = $1`, 1+rng.IntN(200), fmt.Sprint(rng.IntN(1000)))
		case k < 9:
			return exec(`UPDATE "Gift Cards" SET balance = balance + 1, "Note" = $2 WHERE "Code" = $1`, fmt.Sprintf("GC-%d", 1+rng.IntN(20)), fmt.Sprintf("topped up %d×", rng.IntN(9)))
		default: // an old order is removed
			var id int64
			err := tx.QueryRow(ctx, `SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET $1`, rng.IntN(50)).Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := exec(`DELETE FROM order_items WHERE order_id = $1`, id); err != nil {
				return err
			}
			return exec(`DELETE FROM orders WHERE id = $1`, id)
		}
	})
	return rows, err
}
