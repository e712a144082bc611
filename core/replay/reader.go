package replay

import (
	"context"
	"fmt"
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
	return len(e.Key) + len(e.Data) + len(e.Table.Schema) + len(e.Table.Name) + 48
}

// readSQL selects the events of the interval (from, to]: those whose
// transaction is visible in snapshot $2 and was not in $1, after event $3,
// in log id order. The txid range lets the index on txid narrow the scan.
const readSQL = `
SELECT id, txid::text::int8, at, schema_name, table_name, op::text, key::text, data::text
  FROM pgreplica.log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND txid < pg_snapshot_xmax($2::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND pg_visible_in_snapshot(txid, $2::pg_snapshot)
   AND id > $3
 ORDER BY id`

// readInterval streams the events of (from, to] after afterID to fn, one at
// a time, in id order. fn may stop the stream by returning an error.
func readInterval(ctx context.Context, conn *pgx.Conn, from, to Snapshot, afterID int64, fn func(*event) error) error {
	return readIntervalTx(ctx, conn, from, to, afterID, fn)
}

// readIntervalTx is readInterval on any connection or transaction.
func readIntervalTx(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, from, to Snapshot, afterID int64, fn func(*event) error) error {
	rows, err := q.Query(ctx, readSQL, from.String(), to.String(), afterID)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e event
		var op string
		var txid int64
		if err := rows.Scan(&e.ID, &txid, &e.At, &e.Table.Schema, &e.Table.Name, &op, &e.Key, &e.Data); err != nil {
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

// currentSnapshot takes the origin's current snapshot.
func currentSnapshot(ctx context.Context, conn *pgx.Conn) (Snapshot, error) {
	var s Snapshot
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
		return Snapshot{}, fmt.Errorf("take origin snapshot: %w", err)
	}
	return s, nil
}
