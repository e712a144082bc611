package demo

import (
	"context"
	"fmt"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/verify"
)

// Difference is one table that differs between the origin and a replica.
type Difference struct {
	Replica string
	Table   pg.Table
	// Detail is what differs: counts of rows missing on the replica, extra
	// there or different, and the first such key.
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

// Compare compares tables on the origin and every replica with pgreplica's
// own check (verify: every table at one consistent point, by ranges of
// keys), and sums it up for the demo.
func Compare(ctx context.Context, cfg *config.Config, tables []pg.Table) (Comparison, error) {
	var res Comparison
	out, err := verify.Run(ctx, cfg, verify.Options{Tables: tables, MaxKeys: 10})
	if err != nil {
		return res, err
	}
	seen := map[pg.Table]bool{}
	for i, rr := range out.Replicas {
		for _, t := range rr.Tables {
			if !seen[t.Table] {
				seen[t.Table] = true
				res.Tables++
			}
			if i == 0 {
				res.Rows += t.OriginRows
			}
			if t.Equal {
				continue
			}
			d := Difference{Replica: rr.Name, Table: t.Table}
			switch {
			case t.Skipped != "":
				d.Detail = "not compared: " + t.Skipped
			default:
				d.Detail = fmt.Sprintf("%d rows, replica %d: %d missing on the replica, %d only there, %d different",
					t.OriginRows, t.ReplicaRows, t.MissingCount, t.ExtraCount, t.DifferentCount)
				for _, keys := range [][]verify.Key{t.Missing, t.Extra, t.Different} {
					if len(keys) > 0 {
						d.Detail += "; first key " + keys[0].JSON
						break
					}
				}
			}
			res.Differences = append(res.Differences, d)
		}
	}
	return res, nil
}
