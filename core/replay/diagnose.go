package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Diagnosis explains where a replica is stuck: what `pgreplica why` shows.
type Diagnosis struct {
	Replica  string
	Position Position
	// Pending is what is captured and not applied, by table; Oldest is
	// the capture time of the oldest of it.
	Pending        int64
	PendingByTable map[string]int64
	Oldest         time.Time
	// Tried is how many pending events were applied, in a replica
	// transaction that was rolled back, to find the failing one.
	Tried   int
	Failing *FailingEvent // nil when every tried event applies
}

// FailingEvent is the first pending event that the replica refuses.
type FailingEvent struct {
	ID        int64
	Txid      uint64
	At        time.Time // when it was captured
	Table     string
	Op        string // INSERT, UPDATE, DELETE or TRUNCATE
	Key       string // JSON
	Data      string // JSON
	Statement string // the SQL the applier runs ($1: data, $2: key)
	Error     string // the server's message
	Detail    string
	SQLState  string
	Hint      string // what the operator can do
	Behind    int64  // pending events after it
}

// opWords names an event's operation for the operator.
var opWords = map[byte]string{'I': "INSERT", 'U': "UPDATE", 'D': "DELETE", 'T': "TRUNCATE", 'E': "script (execute)", 'Q': "sequence sample"}

// Diagnose reads the replica's position and what is pending for it on the
// origin, then applies the pending events (at most limit) in order, in a
// replica transaction that is always rolled back, to name the first one
// the replica refuses and why. It changes nothing. Events of tables being
// copied or held (pgreplica retry --table) are held, not applied, and are
// not tried.
func Diagnose(ctx context.Context, cfg *config.Config, replica string, limit int) (Diagnosis, error) {
	r, err := cfg.Replica(replica)
	if err != nil {
		return Diagnosis{}, err
	}
	d := Diagnosis{Replica: r.Name, PendingByTable: map[string]int64{}}
	origin, err := pg.ConnectOrigin(ctx, cfg, "why "+cfg.Name)
	if err != nil {
		return d, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	conn, err := pg.ConnectNet(ctx, pg.ReplicaRole(r.Name), r.DSN, pg.AppName("why "+cfg.Name), pg.NetOf(cfg))
	if err != nil {
		return d, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	pos, err := ReadPosition(ctx, conn, cfg.Name)
	if err != nil {
		return d, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	d.Position = pos
	target := pos.Target
	if target.IsZero() {
		if target, err = CurrentSnapshot(ctx, origin); err != nil {
			return d, err
		}
	}

	rows, err := origin.Query(ctx, `
SELECT format('%I.%I', schema_name, table_name), count(*), min(at) FROM pgreplica.log
 WHERE txid >= pg_snapshot_xmin($1::pg_snapshot)
   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND NOT ($2::pg_snapshot IS NOT NULL AND pg_visible_in_snapshot(txid, $2::pg_snapshot) AND id <= $3)
 GROUP BY 1`, pos.Snapshot.String(), nullable(pos.Target), pos.LastID)
	if err != nil {
		return d, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
	}
	for rows.Next() {
		var t string
		var n int64
		var at time.Time
		if err := rows.Scan(&t, &n, &at); err != nil {
			return d, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
		}
		d.PendingByTable[t] = n
		d.Pending += n
		if d.Oldest.IsZero() || at.Before(d.Oldest) {
			d.Oldest = at
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("origin: count pending events for %s: %w", r.Name, err)
	}
	if d.Pending == 0 {
		return d, nil
	}

	if err := prepareApplySession(ctx, conn, cfg.Name, nil); err != nil {
		return d, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return d, fmt.Errorf("replica %s: begin: %w", r.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// A row lock held by a running engine must not hang the diagnosis.
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '5s'"); err != nil {
		return d, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	copying := map[pg.Table]bool{}
	trows, err := tx.Query(ctx, `SELECT schema_name, table_name FROM pgreplica.table_state
	                              WHERE set_name = $1 AND state IN ('copying', 'held')`, cfg.Name)
	if err != nil {
		return d, fmt.Errorf("replica %s: read table states: %w", r.Name, err)
	}
	for trows.Next() {
		var t pg.Table
		if err := trows.Scan(&t.Schema, &t.Name); err != nil {
			return d, fmt.Errorf("replica %s: read table states: %w", r.Name, err)
		}
		copying[t] = true
	}
	trows.Close()

	var events []*event
	stopRead := errors.New("enough")
	err = readIntervalTx(ctx, origin, pos.Snapshot, target, pos.LastID, func(e *event) error {
		if len(events) >= limit {
			return stopRead
		}
		if !copying[e.Table] {
			events = append(events, e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, stopRead) {
		return d, fmt.Errorf("origin: %w", err)
	}
	a := newApplier(conn, cfg.Name, r.Name, ApplyExact)
	for i, e := range events {
		if _, err := a.applyExactIn(ctx, tx, []*event{e}); err != nil {
			if len(e.Key) == 0 && e.Op == 'I' {
				e.Key = []byte(keyOf(ctx, origin, e))
			}
			d.Failing = describeFailure(ctx, a, e, err)
			d.Failing.Behind = d.Pending - int64(i) - 1
			break
		}
		d.Tried++
	}
	return d, nil
}

func describeFailure(ctx context.Context, a *applier, e *event, err error) *FailingEvent {
	f := &FailingEvent{ID: e.ID, Txid: e.Txid, At: e.At, Table: e.Table.String(), Op: opWords[e.Op],
		Key: string(e.Key), Data: string(e.Data), Error: err.Error()}
	if e.Op == 'T' {
		f.Statement = "TRUNCATE " + e.Table.Ident()
	} else if m, ok := a.meta[e.Table]; ok && m != nil {
		// The statement was built before it failed (tableMeta is cached).
		if sql, _, serr := a.statement(ctx, e); serr == nil {
			f.Statement = sql
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		f.Error, f.Detail, f.SQLState = pgErr.Message, pgErr.Detail, pgErr.Code
	}
	f.Hint = hintFor(a.replica, f)
	return f
}

func hintFor(replica string, f *FailingEvent) string {
	retry := fmt.Sprintf("then pgreplica retry --replica %s (or wait: the engine retries by itself); or move past this one event: pgreplica skip --replica %s --event %d", replica, replica, f.ID)
	switch f.SQLState {
	case pgerrcode.UniqueViolation:
		return fmt.Sprintf("the replica has a row the origin had not: delete it on the replica (%s, key %s), or resync the table with pgreplica sync --table %s; %s", f.Table, f.Key, f.Table, retry)
	case pgerrcode.UndefinedTable:
		return fmt.Sprintf("create %s on the replica (pgreplica sync --schema --table %s); %s", f.Table, f.Table, retry)
	case pgerrcode.UndefinedColumn:
		return fmt.Sprintf("the replica's %s lacks a column the origin has: add it there; %s", f.Table, retry)
	case pgerrcode.ForeignKeyViolation:
		return fmt.Sprintf("a foreign key on the replica refuses the row: add the missing parent row, or let the apply run with session_replication_role = replica; %s", retry)
	case pgerrcode.NotNullViolation, pgerrcode.CheckViolation:
		return fmt.Sprintf("the replica's %s has a constraint the origin has not: align the table definitions; %s", f.Table, retry)
	case pgerrcode.InsufficientPrivilege:
		return fmt.Sprintf("grant the replica's apply role the privilege on %s; %s", f.Table, retry)
	case pgerrcode.QueryCanceled, pgerrcode.LockNotAvailable:
		return "the event waited too long for a lock or a timeout on the replica: see pg_locks there"
	}
	return "fix the cause on the replica; " + retry
}

// keyOf is an INSERT's key, taken from its data by the table's primary key
// on the origin ("" when it has none or cannot be read).
func keyOf(ctx context.Context, origin interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, e *event) string {
	var key *string
	err := origin.QueryRow(ctx, `
SELECT jsonb_object_agg(a.attname, $2::jsonb -> a.attname::text)::text
  FROM pg_index i
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = to_regclass(format('%I.%I', $1::text, $3::text)) AND i.indisprimary`,
		e.Table.Schema, string(e.Data), e.Table.Name).Scan(&key)
	if err != nil || key == nil {
		return ""
	}
	return *key
}
