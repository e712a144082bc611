package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/pg"
)

// applier applies batches of events on one replica connection.
type applier struct {
	conn    *pgx.Conn
	set     string
	replica string
	meta    map[pg.Table]*tableMeta
	mode    ApplyMode

	// inOrder: the session could not set session_replication_role, so the
	// replica's foreign keys (and their actions) act on applied changes.
	// Set-based apply orders a batch by table, which can break them (a
	// parent deleted before its child: the replica's cascade, then the
	// child's delete finds nothing): such a replica is applied event by
	// event in the origin's order, which they always accept.
	inOrder    bool
	orderKnown bool

	skip     map[int64]bool // events the operator skipped (pgreplica.skipped)
	skipRead time.Time      // when skip was read

	mm *mmRules // a direction of a multi-master set: events with versions go through the table's apply function

	noCopies     bool     // the last batch found no table being copied
	held         []string // tables held on the replica, as the last batch found them (held.go)
	fallbacks    int      // batches replayed event by event after the set-based apply failed
	lastFallback error    // why, for the log
}

// ApplyMode chooses how batches are applied.
type ApplyMode string

// The apply modes. Auto folds batches of 16 events or more and applies them
// set-based, smaller ones event by event, and replays a batch event by event
// when the set-based apply fails; Exact never folds; Fast folds every batch
// and never falls back (tests use it to prove the fast path on small data).
const (
	ApplyAuto  ApplyMode = ""
	ApplyExact ApplyMode = "exact"
	ApplyFast  ApplyMode = "fast"
)

// stopError is an error the operator must fix (duplicate key, missing
// table or column): the worker stops and retries only slowly.
type stopError struct {
	msg string
	err error // the cause, kept in the chain (a *pgconn.PgError), or nil
}

func (e *stopError) Error() string { return e.msg }

func (e *stopError) Unwrap() error { return e.err }

func stop(format string, args ...any) error { return &stopError{msg: fmt.Sprintf(format, args...)} }

// IsStop reports whether err needs the operator (as opposed to a transient
// fault that a retry cures).
func IsStop(err error) bool {
	var s *stopError
	return errors.As(err, &s)
}

func newApplier(conn *pgx.Conn, set, replica string, mode ApplyMode) *applier {
	return &applier{conn: conn, set: set, replica: replica, mode: mode, meta: map[pg.Table]*tableMeta{}}
}

// checkOrder finds out, once per session, whether it must apply in order
// (see inOrder).
func (a *applier) checkOrder(ctx context.Context, tx session) error {
	if a.orderKnown {
		return nil
	}
	var role string
	if err := tx.Conn().QueryRow(ctx, "SELECT current_setting('session_replication_role')").Scan(&role); err != nil {
		return fmt.Errorf("read session_replication_role: %w", err)
	}
	a.inOrder, a.orderKnown = role != "replica", true
	return nil
}

// session is what applying needs of a replica connection in a transaction:
// a pgx.Tx, or ownTx, a connection whose BEGIN and COMMIT the applier sends
// itself, pipelined with its first and last statements.
type session interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Conn() *pgx.Conn
}

// ownTx is a connection on which applyIn begins and commits the
// transaction itself (BEGIN rides in its first pipeline, COMMIT in its last).
type ownTx struct{ c *pgx.Conn }

func (o ownTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return o.c.Exec(ctx, sql, args...)
}

func (o ownTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return o.c.Query(ctx, sql, args...)
}

func (o ownTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return o.c.SendBatch(ctx, b)
}

func (o ownTx) Conn() *pgx.Conn { return o.c }

// applyBatch applies events (in order) and moves the position from old to
// next, all in one replica transaction. It returns the conflicts found.
func (a *applier) applyBatch(ctx context.Context, old, next Position, events []*event) ([]Conflict, error) {
	conflicts, err := a.applyIn(ctx, ownTx{a.conn}, old, next, events)
	if err != nil {
		a.skip = nil // an operator may skip the failing event: read them again
		// Whatever failed, the transaction is not committed: end it.
		if !a.conn.IsClosed() {
			// Bounded: on a dead path the connection is dropped anyway.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = a.conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return nil, err
	}
	return conflicts, nil
}

// applyIn is applyBatch on a session: inside the caller's transaction
// (a pgx.Tx), or beginning and committing its own (ownTx).
//
// The first statement moves the position from old to next, and fails the
// transaction (errPositionMoved) unless the stored position is still old:
// it takes the position's row lock, so a concurrent applier waits there,
// before any event is applied, and then finds the position moved and
// re-reads it instead of applying the same events again. The same
// statement reads the tables being copied.
//
// Tables being copied by `pgreplica sync` follow the online-copy protocol
// (copyprotocol.go): applyWithCopies holds, skips and drains their events.
//
// When the previous batch found no table being copied (the usual case), the
// events' statements are sent in the same pipeline as BEGIN and the
// position move, so a batch costs two round trips (that pipeline, and the
// conflicts with COMMIT); should a copy have started meanwhile, that
// transaction is rolled back and the batch applied again with the copy's
// rules.
func (a *applier) applyIn(ctx context.Context, tx session, old, next Position, events []*event) ([]Conflict, error) {
	_, own := tx.(ownTx)
	count := len(events) // held events drained below were counted when held
	if err := a.checkOrder(ctx, tx); err != nil {
		return nil, err
	}
	skipped, err := a.skippedEvents(ctx, tx)
	if err != nil {
		return nil, err
	}
	// Scripts, sequence samples and skipped events take the careful path.
	optimistic := own && a.noCopies && !needsCare(events, skipped)
	p := &pipeline{}
	var prefixErr error // BEGIN, the position move or the savepoint failed
	if own {
		p.queue(func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				prefixErr = fmt.Errorf("begin: %w", err)
			}
			return prefixErr
		}, "BEGIN")
	}
	var states map[pg.Table]tableState
	queuePositionMove(p, a.set, old, next, count, func(st map[pg.Table]tableState, err error) error {
		states, prefixErr = st, err
		if err == nil && optimistic && len(st) > 0 {
			prefixErr = errCopyStarted
		}
		return prefixErr
	})
	var conflicts []Conflict
	switch {
	case optimistic && len(events) == 0:
		// Nothing to apply: no conflict can come, commit at once.
		p.queue(func(br pgx.BatchResults) error { _, err := br.Exec(); return err }, "COMMIT")
		if err := p.run(ctx, tx); err != nil {
			if prefixErr != nil && !errors.Is(prefixErr, errCopyStarted) {
				return nil, prefixErr
			}
			if prefixErr == nil {
				return nil, fmt.Errorf("commit: %w", err)
			}
			// A copy started: the position move committed nonetheless
			// (nothing was applied); the next batch takes the copy's path.
			a.noCopies = false
			return nil, nil
		}
		return nil, nil
	case optimistic:
		var err error
		conflicts, err = a.applyPipelined(ctx, tx, p, events, &prefixErr)
		if errors.Is(prefixErr, errCopyStarted) {
			// A copy started since the last batch: what was queued may
			// apply events that must now be held. Undo it, apply again.
			if _, err := a.conn.Exec(ctx, "ROLLBACK"); err != nil {
				return nil, fmt.Errorf("rollback: %w", err)
			}
			a.noCopies = false
			return a.applyIn(ctx, tx, old, next, events)
		}
		if prefixErr != nil {
			return nil, prefixErr
		}
		if err != nil {
			return nil, err
		}
	default:
		if err := p.run(ctx, tx); err != nil {
			if prefixErr != nil {
				return nil, prefixErr
			}
			return nil, fmt.Errorf("move position: %w", err)
		}
		var err error
		if conflicts, err = a.applyWithCopies(ctx, tx, states, skipped, events); err != nil {
			return nil, err
		}
	}
	a.noCopies = len(states) == 0
	a.held = heldNames(states)

	b := &pgx.Batch{}
	for _, c := range conflicts {
		if c.Ledgered {
			continue
		}
		b.Queue(`INSERT INTO pgreplica.conflict (set_name, event_id, txid, schema_name, table_name, op, key, data, kind)
		         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9)`,
			a.set, c.EventID, fmt.Sprint(c.Txid), c.Table.Schema, c.Table.Name, c.Op, c.Key, nullText([]byte(c.Data)), c.Kind)
	}
	a.queueCopiesDone(b, states, next)
	if own {
		b.Queue("COMMIT")
	}
	if b.Len() == 0 {
		return conflicts, nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return conflicts, nil
}

// applyRows applies events without scripts or sequence samples in tx: one
// statement each, or folded and set-based inside a savepoint.
func (a *applier) applyRows(ctx context.Context, tx session, events []*event) ([]Conflict, error) {
	if !a.fastFor(events) {
		return a.applyExactIn(ctx, tx, events)
	}
	// The savepoint is released by the commit.
	if _, err := tx.Exec(ctx, "SAVEPOINT pgreplica_fast"); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	return a.applySetBased(ctx, tx, events)
}

// needsCare reports whether a batch holds a script, a sequence sample or
// a skipped event: then it is not pipelined with BEGIN (see applyIn).
func needsCare(events []*event, skipped map[int64]bool) bool {
	for _, e := range events {
		if e.Op == 'E' || e.Op == 'Q' || skipped[e.ID] {
			return true
		}
	}
	return false
}

// applyPipelined applies events with their statements queued after what p
// holds (BEGIN and the position move), in one pipeline up to the first COPY:
// folded and set-based inside a savepoint when the batch is big enough, or
// one statement per event. If the set-based apply fails, the savepoint is
// rolled back and the events are replayed one by one, which either
// succeeds or names the event that fails. prefixErr is set by the readers
// of p's own statements; no fallback is tried when it is.
func (a *applier) applyPipelined(ctx context.Context, tx session, p *pipeline, events []*event, prefixErr *error) ([]Conflict, error) {
	if a.fastFor(events) {
		ops, err := a.planFast(ctx, events)
		if err == nil {
			p.queue(func(br pgx.BatchResults) error {
				if _, err := br.Exec(); err != nil {
					*prefixErr = fmt.Errorf("savepoint: %w", err)
				}
				return *prefixErr
			}, "SAVEPOINT pgreplica_fast")
			conflicts, err := a.execOps(ctx, tx, p, ops)
			if err == nil || *prefixErr != nil {
				return conflicts, err
			}
			return a.fallBack(ctx, tx, events, err)
		}
		if a.mode == ApplyFast {
			return nil, fmt.Errorf("fast apply: %w", err)
		}
		// Planning failed (a column the replica lacks): nothing was sent;
		// the exact path names the event.
		a.fallbacks++
		a.lastFallback = err
	}
	return a.execOps(ctx, tx, p, []op{{exact: events}})
}

// applyExactIn applies events one statement each (pipelined), in order.
func (a *applier) applyExactIn(ctx context.Context, tx session, events []*event) ([]Conflict, error) {
	b := &pgx.Batch{}
	queued, err := a.queueExact(ctx, b, events)
	if err != nil || b.Len() == 0 {
		return nil, err
	}
	br := tx.SendBatch(ctx, b)
	conflicts, err := a.readExact(br, queued)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("apply: %w", cerr)
	}
	return conflicts, err
}

// queueExact adds one statement per event (one per group of tables
// truncated together) to b and returns the event of each statement.
func (a *applier) queueExact(ctx context.Context, b *pgx.Batch, events []*event) ([]*event, error) {
	var queued []*event
	for i := 0; i < len(events); i++ {
		e := events[i]
		if e.Op == 'T' {
			// Tables truncated by one statement go in one TRUNCATE, so that
			// foreign keys between them do not refuse it.
			m, err := a.tableMeta(ctx, e.Table, e.ID)
			if err != nil {
				return nil, err
			}
			group := []string{m.target}
			for i+1 < len(events) && events[i+1].Op == 'T' && events[i+1].Txid == e.Txid && events[i+1].ID == events[i].ID+1 {
				i++
				next, err := a.tableMeta(ctx, events[i].Table, events[i].ID)
				if err != nil {
					return nil, err
				}
				group = append(group, next.target)
			}
			b.Queue("TRUNCATE " + strings.Join(group, ", "))
			queued = append(queued, e)
			continue
		}
		if a.mm == nil && e.Op == 'U' && e.Meta != nil {
			// conflicts.detect_drift: compare the row's old values first.
			sql, args, ok, err := a.driftCheck(ctx, e)
			if err != nil {
				return nil, err
			}
			if ok {
				b.Queue(sql, args...)
				queued = append(queued, &event{ID: e.ID, Txid: e.Txid, Table: e.Table, Op: 'C', Key: e.Key, Data: e.Data})
			}
		}
		sql, args, err := a.statement(ctx, e)
		if err != nil {
			return nil, err
		}
		b.Queue(sql, args...)
		queued = append(queued, e)
	}
	return queued, nil
}

// readExact reads the results of the statements queueExact queued: an
// update or delete that touched no row is a conflict.
func (a *applier) readExact(br pgx.BatchResults, queued []*event) ([]Conflict, error) {
	var conflicts []Conflict
	for _, e := range queued {
		if a.viaMM(e) {
			// The table's apply function returns the conflict's kind ('' for
			// none) and has recorded it in the ledger.
			var kind string
			if err := br.QueryRow().Scan(&kind); err != nil {
				return nil, a.explain(e, err)
			}
			if kind != "" {
				conflicts = append(conflicts, Conflict{EventID: e.ID, Txid: e.Txid, Table: e.Table,
					Op: string(e.Op), Key: string(e.Key), Data: string(e.Data), Kind: kind, At: time.Now(), Ledgered: true})
			}
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			return nil, a.explain(e, err)
		}
		if e.Op == 'C' {
			if tag.RowsAffected() > 0 { // the replica's row had changed: drift
				conflicts = append(conflicts, Conflict{EventID: e.ID, Txid: e.Txid, Table: e.Table,
					Op: "U", Key: string(e.Key), Data: string(e.Data), Kind: UpdateOriginDiffers, At: time.Now()})
			}
			continue
		}
		if tag.RowsAffected() == 0 && (e.Op == 'U' || e.Op == 'D') {
			kind := UpdateNoRow
			if e.Op == 'D' {
				kind = DeleteNoRow
			}
			conflicts = append(conflicts, Conflict{EventID: e.ID, Txid: e.Txid, Table: e.Table,
				Op: string(e.Op), Key: string(e.Key), Data: string(e.Data), Kind: kind, At: time.Now()})
		}
	}
	return conflicts, nil
}

// errPositionMoved means the stored position is not the one this worker
// applied from: another applier works on the same replica, or a verify or
// sync moved it. The worker re-reads it and goes on from there.
var errPositionMoved = errors.New("the replica's position changed under this applier (another pgreplica applying, or a verify); re-reading it")

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// explain turns a failed statement into an error that names the event.
func (a *applier) explain(e *event, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("apply event %d to %s: %w", e.ID, e.Table, err)
	}
	op := map[byte]string{'I': "INSERT into", 'U': "UPDATE of", 'D': "DELETE from", 'T': "TRUNCATE of", 'E': "script for", 'Q': "sequences of"}[e.Op]
	what := fmt.Sprintf("replica %s: %s %s (event %d)", a.replica, op, e.Table, e.ID)
	switch {
	case pg.IsTransient(err):
		return fmt.Errorf("%s: %w", what, err) // transient: retried
	case pgErr.Code == pgerrcode.UndefinedTable:
		return stopTable(e.Table, err, "replica %s lacks table %s (event %d); its events are held there: create it, then pgreplica retry --table %s (or pgreplica sync --table %s)", a.replica, e.Table, e.ID, e.Table, e.Table)
	case pgErr.Code == pgerrcode.UndefinedColumn || pgErr.Code == pgerrcode.NotNullViolation || pgErr.Code == pgerrcode.DatatypeMismatch:
		// the replica's table is not the shape of the origin's
		return stopTable(e.Table, err, "%s: %s [SQLSTATE %s]; its events are held there: fix the table, then pgreplica retry --table %s (or pgreplica sync --table %s)",
			what, pgErr.Message, pgErr.Code, e.Table, e.Table)
	}
	msg := what + ": " + pgErr.Message
	if pgErr.Detail != "" {
		msg += " (" + strings.TrimSuffix(pgErr.Detail, ".") + ")"
	}
	if pg.IsUniqueViolation(err) {
		msg += "; the replica has a row the origin had not: remove it there or resync the table"
	} else {
		msg += " [SQLSTATE " + pgErr.Code + "]"
	}
	return &stopError{msg: msg, err: err}
}

// pipeline is statements sent together, each with the function that reads
// its result.
type pipeline struct {
	b     pgx.Batch
	reads []func(pgx.BatchResults) error
}

func (p *pipeline) queue(read func(pgx.BatchResults) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.reads = append(p.reads, read)
}

// run sends the pipeline and reads every result in order; the first error
// ends it.
func (p *pipeline) run(ctx context.Context, tx session) error {
	if p.b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &p.b)
	for _, read := range p.reads {
		if err := read(br); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

// execOps runs ops after what p already holds: every statement up to a
// COPY goes in one pipeline.
func (a *applier) execOps(ctx context.Context, tx session, p *pipeline, ops []op) ([]Conflict, error) {
	var conflicts []Conflict
	for _, o := range ops {
		switch {
		case o.copy != nil:
			if err := p.run(ctx, tx); err != nil {
				return nil, err
			}
			p = &pipeline{}
			if err := a.copyInsert(ctx, tx, o.copy.tn, o.copy.rows); err != nil {
				return nil, err
			}
		case o.set != nil:
			st := o.set
			if st.op == 'I' {
				p.queue(func(br pgx.BatchResults) error { _, err := br.Exec(); return err }, st.sql, st.arg)
				continue
			}
			p.queue(func(br pgx.BatchResults) error {
				c, err := readSet(br, st)
				conflicts = append(conflicts, c...)
				return err
			}, st.sql, st.arg)
		default:
			queued, err := a.queueExact(ctx, &p.b, o.exact)
			if err != nil {
				return nil, err
			}
			for _, e := range queued {
				p.reads = append(p.reads, func(br pgx.BatchResults) error {
					c, err := a.readExact(br, []*event{e})
					conflicts = append(conflicts, c...)
					return err
				})
			}
		}
	}
	if err := p.run(ctx, tx); err != nil {
		return nil, err
	}
	// Set-based steps run deletes before updates: report in event order.
	slices.SortStableFunc(conflicts, func(x, y Conflict) int { return cmpInt(x.EventID, y.EventID) })
	return conflicts, nil
}
