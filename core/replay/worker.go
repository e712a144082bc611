package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// worker applies one replication set to one replica. It owns two
// connections: one to the origin to read the log, one to the replica.
type worker struct {
	set     string
	replica config.Replica
	origin  string // origin DSN
	limits  config.Batch
	mode    ApplyMode
	async   bool // apply with synchronous_commit = off (the engine; not Aligned)
	log     *slog.Logger
	emit    func(Event)

	originConn  *pgx.Conn
	replicaConn *pgx.Conn
	apply       *applier
	pos         Position
	havePos     bool

	mu        sync.Mutex
	status    ReplicaStatus
	published time.Time
	written   time.Time // when the position was last stored on the replica
	unflushed walMark   // async: the newest position committed, not yet known flushed
}

// walMark is a position and the replica's WAL insert location read after
// its commit: once the replica's WAL is flushed up to lsn, so is the commit.
type walMark struct {
	snap Snapshot
	lsn  string // pg_lsn text
}

// idleWriteEvery is how often an idle worker stores its position although
// no event came, so that the position and the status keep up with the origin.
const idleWriteEvery = 10 * time.Second

func newWorker(cfg *config.Config, r config.Replica, log *slog.Logger, emit func(Event), mode ApplyMode) *worker {
	w := &worker{set: cfg.Name, replica: r, origin: cfg.Origin.DSN, limits: cfg.Batch, mode: mode,
		log: log.With("replica", r.Name), emit: emit}
	w.status = ReplicaStatus{Name: r.Name, State: Starting}
	return w
}

// connect (re)opens whatever connection is missing.
func (w *worker) connect(ctx context.Context) error {
	if w.originConn != nil && w.originConn.IsClosed() {
		w.originConn = nil
	}
	if w.replicaConn != nil && w.replicaConn.IsClosed() {
		w.replicaConn = nil
	}
	if w.originConn == nil {
		c, err := pg.ConnectAs(ctx, "origin", w.origin, "pgreplica read "+w.set+"/"+w.replica.Name)
		if err != nil {
			return err
		}
		// An interval is read in id order: a big backlog is sorted before
		// its first event streams, in memory rather than on disk.
		if _, err := c.Exec(ctx, "SET work_mem = '64MB'"); err != nil {
			c.Close(ctx)
			return fmt.Errorf("origin: %w", err)
		}
		w.originConn = c
	}
	if w.replicaConn == nil {
		c, err := pg.ConnectAs(ctx, "replica "+w.replica.Name, w.replica.DSN, "pgreplica apply "+w.set)
		if err != nil {
			return err
		}
		if err := prepareApplySession(ctx, c, w.set); err != nil {
			c.Close(ctx)
			return fmt.Errorf("replica %s: %w", w.replica.Name, err)
		}
		if w.async {
			// The position commits with the events it covers, so a commit
			// lost in a replica crash loses both together and the batch is
			// read again (as native logical replication's apply worker
			// does). The origin is told only positions the replica has
			// flushed (publish), so it never purges what a crash lost.
			if _, err := c.Exec(ctx, "SET synchronous_commit = off"); err != nil {
				c.Close(ctx)
				return fmt.Errorf("replica %s: %w", w.replica.Name, err)
			}
		}
		w.replicaConn = c
		w.unflushed = walMark{} // a crash may have lost what it named
		w.apply = newApplier(c, w.set, w.replica.Name, w.mode)
		w.havePos = false
	}
	if !w.havePos {
		p, err := ReadPosition(ctx, w.replicaConn, w.set)
		if err != nil {
			if errors.Is(err, ErrNoPosition) {
				return &stopError{msg: fmt.Sprintf("replica %s: %v", w.replica.Name, err), err: err}
			}
			return fmt.Errorf("replica %s: %w", w.replica.Name, err)
		}
		w.pos, w.havePos = p, true
		w.setStatus(func(s *ReplicaStatus) { s.Position = p; s.LastApplied = p.AppliedAt })
	}
	return nil
}

// disconnect drops the connections after an error, so the next attempt
// starts clean.
func (w *worker) disconnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w.originConn != nil {
		w.originConn.Close(ctx)
		w.originConn = nil
	}
	if w.replicaConn != nil {
		w.replicaConn.Close(ctx)
		w.replicaConn = nil
	}
	w.havePos = false
}

// catchUp applies everything the origin had committed when it was called:
// the interval up to the origin's current snapshot (after finishing a
// half-applied one, if any). It does not look again afterwards: changes
// committed meanwhile have sent a notification, which wakes the worker at
// once (and the poll interval covers a lost one). stopping is checked
// between batches: a batch in flight is always finished.
func (w *worker) catchUp(ctx, stopping context.Context) (applied int, err error) {
	if err := w.connect(ctx); err != nil {
		return 0, err
	}
	for {
		if stopping.Err() != nil {
			return applied, nil
		}
		// Resuming a half-applied interval, or (zero) the interval up to
		// the origin's current snapshot, which the read takes.
		resuming := !w.pos.Target.IsZero()
		n, err := w.applyInterval(ctx, stopping, w.pos.Target)
		applied += n
		if errors.Is(err, errPositionMoved) {
			// Someone else moved the position (a verify, a second applier):
			// read it again and go on from there.
			w.log.Info("position moved by another session; re-reading it")
			w.havePos = false
			if err := w.connect(ctx); err != nil {
				return applied, err
			}
			continue
		}
		if err != nil {
			return applied, err
		}
		w.publish(ctx, false)
		if !resuming {
			return applied, nil
		}
	}
}

// chunk is a bounded run of an interval's events; final marks the last.
type chunk struct {
	target Snapshot // the end of the interval
	events []*event
	bytes  int
	final  bool
}

// applyInterval applies the events of (pos.Snapshot, target] in batches of
// bounded size, each in its own replica transaction; a zero target is the
// origin's current snapshot, taken by the read itself. A reader goroutine
// reads and parses the next batch from the origin while the current one is
// applied; it is at most one batch ahead, so memory stays bounded.
func (w *worker) applyInterval(ctx, stopping context.Context, target Snapshot) (int, error) {
	if !w.pos.Target.IsZero() {
		w.setState(Catchup, nil)
	}
	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	chunks := make(chan chunk)
	readErr := make(chan error, 1)
	from, lastID, limits := w.pos.Snapshot, w.pos.LastID, w.limits
	go func() {
		defer close(chunks)
		send := func(c chunk) bool {
			select {
			case chunks <- c:
				return true
			case <-readCtx.Done():
				return false
			}
		}
		cur := chunk{target: target}
		each := func(e *event) error {
			if len(cur.events) >= limits.MaxEvents || int64(cur.bytes+e.size()) > limits.MaxBytes && len(cur.events) > 0 {
				// Full, and e follows: not the last batch of the interval.
				if !send(cur) {
					return readCtx.Err()
				}
				cur = chunk{target: cur.target}
			}
			e.parse()
			cur.events = append(cur.events, e)
			cur.bytes += e.size()
			return nil
		}
		var err error
		if target.IsZero() {
			err = readCurrent(readCtx, w.originConn, from, lastID, func(s Snapshot) error {
				cur.target = s
				return nil
			}, each)
		} else {
			err = readInterval(readCtx, w.originConn, from, target, lastID, each)
		}
		if err == nil {
			cur.final = true
			if !send(cur) {
				err = readCtx.Err()
			}
		}
		readErr <- err
	}()
	applied := 0
	stop := func(err error) (int, error) {
		cancelRead()
		for range chunks {
		}
		<-readErr
		return applied, err
	}
	for c := range chunks {
		if !c.final && w.status.State == Streaming {
			w.setState(Catchup, nil)
		}
		if c.final && len(c.events) == 0 && w.pos.Target.IsZero() && w.pos.Snapshot.Covers(c.target) {
			// Nothing new since the position.
			if err := w.idle(ctx, w.pos); err != nil {
				return stop(err)
			}
			continue
		}
		if err := w.flush(ctx, c.target, c); err != nil {
			return stop(err)
		}
		applied += len(c.events)
		if !c.final && stopping.Err() != nil {
			return stop(nil) // the position records how far we got
		}
	}
	return applied, <-readErr
}

// flush applies one chunk of the interval ending at target.
func (w *worker) flush(ctx context.Context, target Snapshot, c chunk) error {
	next := Position{Snapshot: w.pos.Snapshot, Target: target}
	if len(c.events) > 0 {
		next.LastID = c.events[len(c.events)-1].ID
	}
	if c.final {
		next = Position{Snapshot: target}
	}
	if len(c.events) == 0 {
		return w.idle(ctx, next)
	}
	start := time.Now()
	fallbacks := w.apply.fallbacks
	conflicts, err := w.apply.applyBatch(ctx, w.pos, next, c.events)
	if err != nil {
		return err
	}
	if w.apply.fallbacks > fallbacks {
		w.log.Info("batch applied event by event after the set-based apply failed",
			"events", len(c.events), "err", w.apply.lastFallback.Error())
	}
	next.AppliedEvents = w.pos.AppliedEvents + int64(len(c.events))
	next.AppliedAt = time.Now()
	w.pos, w.written = next, time.Now()
	w.reportBatch(c.events, c.bytes, time.Since(start), conflicts)
	return nil
}

// idle runs when an interval brought no event. The position moves to next
// only in storage, at most every idleWriteEvery, or at once when a copied
// table is catching up (its held events are applied then).
func (w *worker) idle(ctx context.Context, next Position) error {
	var catchup bool
	err := w.replicaConn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgreplica.table_state
	                                                    WHERE set_name = $1 AND state = 'catchup')`, w.set).Scan(&catchup)
	if err != nil {
		return fmt.Errorf("replica %s: read table states: %w", w.replica.Name, err)
	}
	if !catchup && time.Since(w.written) < idleWriteEvery {
		return nil
	}
	next.AppliedEvents, next.AppliedAt = w.pos.AppliedEvents, w.pos.AppliedAt
	conflicts, err := w.apply.applyBatch(ctx, w.pos, next, nil)
	if err != nil {
		return err
	}
	w.pos, w.written = next, time.Now()
	if len(conflicts) > 0 {
		w.reportBatch(nil, 0, 0, conflicts)
	}
	return nil
}

func (w *worker) reportBatch(batch []*event, bytes int, took time.Duration, conflicts []Conflict) {
	ev := BatchApplied{Replica: w.replica.Name, Events: len(batch), Bytes: bytes, Took: took, Position: w.pos}
	if len(batch) > 0 {
		ev.Oldest = batch[0].At
		for _, e := range batch {
			if e.At.Before(ev.Oldest) {
				ev.Oldest = e.At
			}
		}
	}
	w.setStatus(func(s *ReplicaStatus) {
		s.Position = w.pos
		s.LastApplied = w.pos.AppliedAt
		s.AppliedEvents += int64(len(batch))
		s.Conflicts += len(conflicts)
		s.LastBatch = ev
	})
	if len(batch) > 0 {
		w.log.Info("batch applied", "events", len(batch), "bytes", bytes, "ms", took.Milliseconds(),
			"last_event", batch[len(batch)-1].ID, "position", w.pos.Snapshot.String())
	}
	w.emit(ev)
	for _, c := range conflicts {
		w.log.Warn("conflict", "table", c.Table.String(), "op", c.Op, "key", c.Key, "event", c.EventID,
			"kind", c.Kind, "txid", c.Txid)
		w.emit(ConflictFound{Replica: w.replica.Name, Conflict: c})
	}
}

// publish copies the position to the origin's pgreplica.replica, which
// the purge and the tables view read. At most once a second unless forced.
// With asynchronous commit only a position the replica has flushed is
// copied: the one committed before the previous publish, once the replica's
// WAL is flushed past it (the WAL writer flushes within a few hundred
// milliseconds), or when forced the current one after waiting for the flush.
func (w *worker) publish(ctx context.Context, force bool) {
	if w.originConn == nil || (!force && time.Since(w.published) < time.Second) {
		return
	}
	snap := w.pos.Snapshot
	if w.async {
		var ok bool
		var err error
		if snap, ok, err = w.flushedPosition(ctx, force); err != nil {
			w.log.Warn("could not read the replica's WAL flush location", "err", err)
			return
		}
		if !ok {
			return
		}
	}
	_, err := w.originConn.Exec(ctx, `INSERT INTO pgreplica.replica (name, snapshot, updated_at)
	                                   VALUES ($1, $2::pg_snapshot, now())
	                                   ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()`,
		w.replica.Name, snap.String())
	if err != nil {
		w.log.Warn("could not record position on the origin", "err", err)
		return
	}
	w.published = time.Now()
}

// flushedPosition returns the newest position known to be flushed on the
// replica, and remembers the current one with the WAL location that its
// flush needs. forced waits for the current one's flush.
func (w *worker) flushedPosition(ctx context.Context, force bool) (Snapshot, bool, error) {
	if w.replicaConn == nil || !w.havePos {
		return Snapshot{}, false, nil
	}
	prev := w.unflushed
	lsn := prev.lsn
	if lsn == "" {
		lsn = "0/0"
	}
	var insert string
	var flushed bool
	err := w.replicaConn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn() >= $1::pg_lsn`, lsn).
		Scan(&insert, &flushed)
	if err != nil {
		return Snapshot{}, false, err
	}
	w.unflushed = walMark{snap: w.pos.Snapshot, lsn: insert}
	if force {
		if err := waitFlushed(ctx, w.replicaConn, insert); err != nil {
			return Snapshot{}, false, err
		}
		return w.pos.Snapshot, true, nil
	}
	return prev.snap, flushed && !prev.snap.IsZero(), nil
}

// waitFlushed waits (up to 10s) until the server has flushed its WAL up to
// lsn.
func waitFlushed(ctx context.Context, c *pgx.Conn, lsn string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var flushed bool
		if err := c.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn", lsn).Scan(&flushed); err != nil {
			return fmt.Errorf("read WAL flush location: %w", err)
		}
		if flushed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("WAL not flushed up to %s within 10s", lsn)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *worker) setStatus(f func(*ReplicaStatus)) {
	w.mu.Lock()
	f(&w.status)
	w.mu.Unlock()
}

func (w *worker) setState(s State, err error) {
	w.mu.Lock()
	from := w.status.State
	w.status.State = s
	w.status.Err = ""
	if err != nil {
		w.status.Err = err.Error()
	}
	w.mu.Unlock()
	if from != s {
		w.emit(StateChanged{Replica: w.replica.Name, From: from, To: s, Err: err})
		if err == nil {
			w.log.Info("state", "state", string(s))
		}
	}
}

func (w *worker) snapshot() ReplicaStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// prepareApplySession sets up a replica session that applies changes.
func prepareApplySession(ctx context.Context, c *pgx.Conn, set string) error {
	// The apply session must not capture what it applies (invariant 6): the
	// origin tag makes pgreplica's triggers skip these changes, and
	// session_replication_role=replica, where allowed, skips every ordinary
	// trigger and foreign-key check as native replication does.
	if _, err := c.Exec(ctx, "SELECT set_config('pgreplica.origin', $1, false)", set); err != nil {
		return fmt.Errorf("set origin tag: %w", err)
	}
	// Values that travel as text are read in the forms the capture
	// functions write them.
	if _, err := c.Exec(ctx, "SET DateStyle = ISO; SET IntervalStyle = postgres"); err != nil {
		return err
	}
	// Set-based apply joins a few thousand keys to a table: always by index.
	if _, err := c.Exec(ctx, "SET enable_hashjoin = off; SET enable_mergejoin = off"); err != nil {
		return err
	}
	// Not allowed without superuser (or a GRANT SET): the origin tag suffices.
	_, _ = c.Exec(ctx, "SET session_replication_role = replica")
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}
