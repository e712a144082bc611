package replay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// event is one captured row change as read from the origin's log. Key and
// Data are JSON text exactly as the origin's to_jsonb made it.
type event struct {
	ID    int64
	Txid  uint64
	At    time.Time
	Table pg.Table
	Op    byte // 'I', 'U', 'D' or 'T'
	Key   []byte
	Data  []byte
	Route []byte // per filtered replica, which side of its filter the row is on (route.go)
	Meta  []byte // multi-master: the row's versions (log.meta); nil elsewhere

	key, data image // Key and Data parsed (by parse)
}

// parse parses the key and data images once, off the apply path.
func (e *event) parse() {
	if e.Key != nil && e.key == nil {
		e.key = parseImage(e.Key)
	}
	if e.Data != nil && e.data == nil {
		e.data = parseImage(e.Data)
	}
}

func (e *event) size() int {
	return len(e.Key) + len(e.Data) + len(e.Route) + len(e.Meta) + len(e.Table.Schema) + len(e.Table.Name) + 48
}

// The interval (from, to] is the events whose transaction is visible in
// snapshot to and was not in from. Not visible in from means: at or above
// from's xmax, or in from's in-progress list. So, as PgQ does, the read is
// the txid range [from.xmax, to.xmax) plus, by exact txid, those of from's
// in-progress transactions that have committed since: the index on txid
// serves both, and a transaction left open for hours costs one index probe
// per read, not a rescan of everything logged since it began.
const intervalWhere = `
 WHERE (txid >= $2::xid8 AND txid < pg_snapshot_xmax(%[1]s)
        OR txid = ANY (ARRAY(SELECT x FROM unnest($3::text::xid8[]) AS x WHERE pg_visible_in_snapshot(x, %[1]s))))
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND pg_visible_in_snapshot(txid, %[1]s)
   AND id > $4`

const eventColumns = `id, txid::text::int8, at, schema_name, table_name, op::text, key::text, data::text, route::text, meta::text`

// readSQL selects the events of the interval (from, to], to = $5, after
// event $4, in log id order.
var readSQL = `SELECT ` + eventColumns + ` FROM pgreplica.log` + fmt.Sprintf(intervalWhere, `$5::pg_snapshot`) + `
 ORDER BY id`

// readCurrentSQL is readSQL up to the origin's current snapshot, taken by
// the same statement (so one round trip reads a batch): its first row, id
// 0 and op 'S', carries the snapshot in table_name. pg_current_snapshot()
// is the statement's own snapshot, so the scan sees every event of the
// transactions visible in it.
var readCurrentSQL = `SELECT * FROM (
SELECT 0::int8 AS id, 0::int8, now(), '', pg_current_snapshot()::text, 'S', NULL, NULL, NULL, NULL
 UNION ALL
SELECT ` + eventColumns + ` FROM pgreplica.log` + fmt.Sprintf(intervalWhere, `pg_current_snapshot()`) + `
) AS i ORDER BY id`

// intervalArgs are the arguments $1-$4 of the interval read.
func intervalArgs(from Snapshot, afterID int64) []any {
	var xip strings.Builder
	xip.WriteByte('{')
	for i, x := range from.Xip {
		if i > 0 {
			xip.WriteByte(',')
		}
		xip.WriteString(strconv.FormatUint(x, 10))
	}
	xip.WriteByte('}')
	return []any{from.String(), strconv.FormatUint(from.Xmax, 10), xip.String(), afterID}
}

type querier interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}

// readInterval streams the events of (from, to] after afterID to fn, one at
// a time, in id order. fn may stop the stream by returning an error.
func readInterval(ctx context.Context, q querier, from, to Snapshot, afterID int64, fn func(*event) error) error {
	rows, err := q.Query(ctx, readSQL, append(intervalArgs(from, afterID), to.String())...)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return scanEvents(rows, fn)
}

// readIntervalTx is readInterval on any connection or transaction.
func readIntervalTx(ctx context.Context, q querier, from, to Snapshot, afterID int64, fn func(*event) error) error {
	return readInterval(ctx, q, from, to, afterID, fn)
}

// readCurrent takes the origin's current snapshot and streams the events
// of (from, that snapshot] after afterID, in one statement: first calls
// target with the snapshot, then fn with each event in id order.
func readCurrent(ctx context.Context, q querier, from Snapshot, afterID int64, target func(Snapshot) error, fn func(*event) error) error {
	rows, err := q.Query(ctx, readCurrentSQL, intervalArgs(from, afterID)...)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	first := true
	return scanEvents(rows, func(e *event) error {
		if first {
			first = false
			if e.ID != 0 || e.Op != 'S' {
				return fmt.Errorf("read events: the first row is not the snapshot (event %d)", e.ID)
			}
			snap, err := ParseSnapshot(e.Table.Name)
			if err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			return target(snap)
		}
		return fn(e)
	})
}

func scanEvents(rows pgx.Rows, fn func(*event) error) error {
	defer rows.Close()
	for rows.Next() {
		var e event
		var op string
		var txid int64
		if err := rows.Scan(&e.ID, &txid, &e.At, &e.Table.Schema, &e.Table.Name, &op, &e.Key, &e.Data, &e.Route, &e.Meta); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		e.Txid = uint64(txid)
		e.Op = op[0]
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}
