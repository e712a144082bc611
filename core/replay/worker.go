package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// worker applies one replication set to one replica. It owns two
// connections: one to the origin to read the log, one to the replica.
type worker struct {
	set     string
	replica config.Replica
	mm      *mmRules // a multi-master direction's conflict rules, else nil
	label   string   // the name in status and events: the replica's, or on a multi-master set its direction ("a->b")
	origin  string   // origin DSN
	limits  config.Batch
	mode    ApplyMode
	net     pg.Net        // connection bounds; DeadPath bounds every wait on a server
	grace   time.Duration // an earlier apply session idle this long is an orphan
	async   bool          // apply with synchronous_commit = off (the engine; not Aligned)
	log     *slog.Logger
	emit    func(Event)
	retry   chan struct{} // Engine.Retry: end the backoff now

	originConn  *pgx.Conn
	replicaConn *pgx.Conn
	apply       *applier
	router      *router // the replica's table rules; nil without any
	pos         Position
	havePos     bool
	locked      bool // this session holds the replica's apply lock
	// beside marks a worker that is not an engine's (verify's aligned
	// point): it takes no apply lock, and its replica transaction may stay
	// open while the caller works, so it has no idle-in-transaction timeout.
	beside bool

	mu        sync.Mutex
	status    ReplicaStatus
	published time.Time
	written   time.Time // when the position was last stored on the replica
	summary   applySummary

	progress        atomic.Int64  // unix ns: a batch applied, or found caught up
	noProgressAfter time.Duration // NoProgressFor is reported after this
	downSince       time.Time     // first error of the current run of errors
	unflushed       walMark       // async: the newest position committed, not yet known flushed
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
		net: netOf(cfg), grace: cfg.Timeouts.OrphanGrace, log: log.With("replica", r.Name), emit: emit, retry: make(chan struct{}, 1)}
	w.label = r.Name
	w.mm = newMMRules(cfg)
	if cfg.Source != "" {
		w.label = config.DirectionLabel(cfg.Source, r.Name)
		w.log = log.With("replica", w.label)
	}
	w.status = ReplicaStatus{Name: w.label, State: Starting, StateSince: time.Now()}
	w.progress.Store(time.Now().UnixNano())
	w.noProgressAfter = max(5*time.Second, 2*min(cfg.PollInterval, cfg.Timeouts.OrphanGrace/3))
	return w
}

// within bounds one wait on a server: DeadPath, plus extra for work that
// takes time on the server (a batch of events).
func (w *worker) within(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.net.DeadPath+extra)
}

// deadPath turns the error of a wait that hit its deadline into one that
// says so; other errors are returned as they are.
func deadPath(ctx, waitCtx context.Context, err error, server string, d time.Duration) error {
	if err == nil || ctx.Err() != nil || !errors.Is(waitCtx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: no answer within %s: the network path looks dead; reconnecting (%w)", server, d, err)
}

// connect (re)opens whatever connection is missing and takes the replica's
// apply lock. A *standbyError means another engine holds the lock.
func (w *worker) connect(ctx context.Context) error {
	wait := 2*w.net.ConnectTimeout + w.net.DeadPath
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	at := "origin"
	return deadPath(ctx, cctx, w.connectIn(cctx, &at), at, wait)
}

// connectIn sets *at to the server it is talking to, so that a dead path
// names it.
func (w *worker) connectIn(ctx context.Context, at *string) error {
	if w.originConn != nil && w.originConn.IsClosed() {
		w.originConn = nil
	}
	if w.replicaConn != nil && w.replicaConn.IsClosed() {
		w.replicaConn = nil
	}
	if w.originConn == nil {
		c, err := pg.ConnectNet(ctx, "origin", w.origin, "pgreplica read "+w.set+"/"+w.replica.Name, w.net)
		if err != nil {
			return err
		}
		// An interval is read in id order: a big backlog is sorted before
		// its first event streams, in memory rather than on disk.
		if _, err := c.Exec(ctx, "SET work_mem = '64MB'"); err != nil {
			closeSoon(c)
			return fmt.Errorf("origin: %w", err)
		}
		w.originConn = c
		if w.router == nil {
			if w.router, err = newRouter(ctx, c, w.replica, w.log); err != nil {
				return fmt.Errorf("origin: %w", err)
			}
		}
	}
	*at = "replica " + w.replica.Name
	if w.replicaConn == nil {
		c, err := pg.ConnectNet(ctx, "replica "+w.replica.Name, w.replica.DSN, applyAppName+w.set, w.net)
		if err != nil {
			return err
		}
		n := &w.net
		if w.beside {
			n = nil
		}
		if err := prepareApplySession(ctx, c, w.set, n); err != nil {
			closeSoon(c)
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
		w.apply.mm = w.mm
		w.havePos, w.locked = false, false
	}
	if !w.locked && !w.beside {
		if err := w.takeLock(ctx); err != nil {
			return err
		}
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
	if w.originConn != nil {
		closeSoon(w.originConn)
		w.originConn = nil
	}
	if w.replicaConn != nil {
		if w.locked && !w.replicaConn.IsClosed() {
			// Release the lock now: the server ends the backend (and frees
			// its locks) only some time after the close.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = w.replicaConn.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", applyLockClass, w.set)
			cancel()
		}
		closeSoon(w.replicaConn)
		w.replicaConn = nil
	}
	w.havePos, w.locked = false, false
}

// closeSoon closes a connection without waiting on a dead path for long.
func closeSoon(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.Close(ctx)
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
		// the origin's current snapshot, which the read takes (a moment
		// after taken: the heartbeat errs towards more lag, never less).
		resuming := !w.pos.Target.IsZero()
		taken := time.Now()
		n, err := w.applyInterval(ctx, stopping, w.pos.Target)
		applied += n
		if errors.Is(err, errPositionMoved) || IsStop(err) && w.positionMoved(ctx) {
			// Someone else moved the position (a verify, a replicate --once,
			// a second applier): a lost race, not a fault. Read it again and
			// go on from there.
			w.log.Info("position moved by another session; re-reading it")
			w.havePos = false
			if err := w.connect(ctx); err != nil {
				return applied, err
			}
			continue
		}
		if t, why, ok := heldTable(err); ok && w.replicaConn != nil && !w.replicaConn.IsClosed() {
			// Only this table's stream stops (see held.go).
			hctx, cancel := w.within(ctx, 0)
			herr := holdTable(hctx, w.replicaConn, w.set, t, why)
			cancel()
			if herr != nil {
				return applied, errors.Join(err, herr)
			}
			w.log.Warn("table held: its events wait on the replica until it is fixed", "table", t.String(), "err", why)
			w.havePos = false
			if err := w.connect(ctx); err != nil {
				return applied, err
			}
			continue
		}
		if err != nil {
			return applied, err
		}
		if err := w.publish(ctx, false); err != nil {
			return applied, err
		}
		if !resuming {
			w.setStatus(func(s *ReplicaStatus) { s.CaughtUpAt = taken })
			return applied, nil
		}
	}
}

// lockRetries is how many times a catch-up whose batch the replica rolled
// back for a lock conflict (a deadlock with another session, as two
// multi-master directions into one node can meet) is run again at once.
const lockRetries = 3

// catchUpThroughLocks is catchUp, run again up to lockRetries times when
// the replica rolled a batch back for a deadlock or a busy lock: the
// position did not move, so the batch is simply applied again.
func (w *worker) catchUpThroughLocks(ctx, stopping context.Context) (int, error) {
	applied, try := 0, 0
	var last error
	err := pg.Retry(ctx, 1+lockRetries, 50*time.Millisecond, pg.IsLockBusy, func() error {
		if try > 0 {
			w.log.Info("batch rolled back by a lock conflict on the replica; applying it again", "err", last.Error(), "try", try)
			w.disconnect()
		}
		try++
		n, err := w.catchUp(ctx, stopping)
		applied += n
		last = err
		return err
	})
	return applied, err
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
	// The read has no deadline of its own (a big interval streams for as
	// long as its batches take to apply), but whenever the reader waits for
	// the next event the origin must send it or be busy finding it.
	watch := w.guardSession(ctx, "origin", w.origin, w.originConn)
	defer watch.stop()
	readCtx := watch.ctx
	cancelRead := watch.cancel
	batches := make(chan batch)
	readErr := make(chan error, 1)
	from, lastID, limits := w.pos.Snapshot, w.pos.LastID, w.limits
	go func() {
		defer close(batches)
		send := func(b batch) bool {
			watch.pause()
			defer watch.kick()
			select {
			case batches <- b:
				return true
			case <-readCtx.Done():
				return false
			}
		}
		cur := batch{target: target}
		each := func(e *event) error {
			if cur.full(e, limits) {
				// Full, and e follows: not the last batch of the interval.
				if !send(cur) {
					return readCtx.Err()
				}
				cur = batch{target: cur.target}
			}
			watch.kick()
			if !w.router.route(e) {
				return nil
			}
			e.parse()
			cur.add(e)
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
		if err != nil && watch.dead() && ctx.Err() == nil {
			err = fmt.Errorf("origin: no event within %s while reading the log, and the server is not working on it: the network path looks dead; reconnecting (%w)", w.net.DeadPath, err)
		}
		watch.pause() // the read is over: nothing more to wait for
		readErr <- err
	}()
	applied := 0
	stop := func(err error) (int, error) {
		cancelRead(nil)
		for range batches {
		}
		<-readErr
		return applied, err
	}
	for b := range batches {
		if !b.final && w.status.State == Streaming {
			w.setState(Catchup, nil)
		}
		if b.final && len(b.events) == 0 && w.pos.Target.IsZero() && w.pos.Snapshot.Covers(b.target) {
			// Nothing new since the position.
			if err := w.idle(ctx, w.pos); err != nil {
				return stop(err)
			}
			continue
		}
		if err := w.flush(ctx, b); err != nil {
			return stop(err)
		}
		applied += len(b.events)
		if !b.final && stopping.Err() != nil {
			return stop(nil) // the position records how far we got
		}
	}
	return applied, <-readErr
}

// flush applies one batch of the interval ending at b.target.
func (w *worker) flush(ctx context.Context, b batch) error {
	next := b.next(w.pos)
	if len(b.events) == 0 {
		return w.idle(ctx, next)
	}
	start := time.Now()
	fallbacks := w.apply.fallbacks
	// A batch takes as long as it takes while the replica works on it; an
	// answer lost on the way is noticed within DeadPath.
	watch := w.guardSession(ctx, "replica "+w.replica.Name, w.replica.DSN, w.replicaConn)
	conflicts, err := w.apply.applyBatch(watch.ctx, w.pos, next, b.events)
	dead := watch.dead()
	watch.stop()
	if err != nil {
		if dead && ctx.Err() == nil {
			return fmt.Errorf("replica %s: no answer within %s while applying a batch, and the server is not working on it: the network path looks dead; reconnecting (%w)",
				w.replica.Name, w.net.DeadPath, err)
		}
		return err
	}
	w.progress.Store(time.Now().UnixNano())
	if w.apply.fallbacks > fallbacks {
		w.log.Info("batch applied event by event after the set-based apply failed",
			"events", len(b.events), "err", w.apply.lastFallback.Error())
	}
	next.AppliedEvents = w.pos.AppliedEvents + int64(len(b.events))
	next.AppliedAt = time.Now()
	w.pos, w.written = next, time.Now()
	w.reportBatch(b.events, b.bytes, time.Since(start), conflicts)
	return nil
}

// idle runs when an interval brought no event. The position moves to next
// only in storage, at most every idleWriteEvery, or at once when a copied
// table is catching up (its held events are applied then).
func (w *worker) idle(outer context.Context, next Position) error {
	ctx, cancel := w.within(outer, 0)
	defer cancel()
	err := w.idleIn(ctx, next)
	if err == nil && next.Target.IsZero() {
		w.progress.Store(time.Now().UnixNano()) // caught up
	}
	return deadPath(outer, ctx, err, "replica "+w.replica.Name, w.net.DeadPath)
}

func (w *worker) idleIn(ctx context.Context, next Position) error {
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
	w.setStatus(func(s *ReplicaStatus) { s.Held = w.apply.held })
	if len(conflicts) > 0 {
		w.reportBatch(nil, 0, 0, conflicts)
	}
	return nil
}

func (w *worker) reportBatch(events []*event, bytes int, took time.Duration, conflicts []Conflict) {
	ev := BatchApplied{Replica: w.label, Events: len(events), Bytes: bytes, Took: took, Position: w.pos}
	if len(events) > 0 {
		ev.Oldest = events[0].At
		for _, e := range events {
			if e.At.Before(ev.Oldest) {
				ev.Oldest = e.At
			}
		}
	}
	w.setStatus(func(s *ReplicaStatus) {
		s.Position = w.pos
		s.LastApplied = w.pos.AppliedAt
		s.AppliedEvents += int64(len(events))
		s.Conflicts += len(conflicts)
		s.LastBatch = ev
		s.Held = w.apply.held
	})
	if len(events) > 0 {
		w.log.Debug("batch applied", "events", len(events), "bytes", bytes, "ms", took.Milliseconds(),
			"last_event", events[len(events)-1].ID, "position", w.pos.Snapshot.String())
		w.summary.add(w.log, time.Now(), len(events), bytes, took, w.pos)
	}
	w.emit(ev)
	for _, c := range conflicts {
		w.log.Warn("conflict", "table", c.Table.String(), "op", c.Op, "key", c.Key, "event", c.EventID,
			"kind", c.Kind, "txid", c.Txid)
		w.emit(ConflictFound{Replica: w.label, Conflict: c})
	}
}

// publish copies the position to the origin's pgreplica.replica, which
// the purge and the tables view read. At most once a second unless forced.
// With asynchronous commit only a position the replica has flushed is
// copied: the one committed before the previous publish, once the replica's
// WAL is flushed past it (the WAL writer flushes within a few hundred
// milliseconds), or when forced the current one after waiting for the flush.
func (w *worker) publish(outer context.Context, force bool) error {
	if w.originConn == nil || w.pos.Snapshot.IsZero() || (!force && time.Since(w.published) < time.Second) {
		return nil // nothing to publish yet (a standby has read no position)
	}
	ctx, cancel := w.within(outer, 0)
	defer cancel()
	snap := w.pos.Snapshot
	if w.async {
		var ok bool
		var err error
		if snap, ok, err = w.flushedPosition(ctx, force); err != nil {
			// A dead path is the worker's error (it reconnects and says
			// so); anything else costs only this publish.
			if derr := deadPath(outer, ctx, err, "replica "+w.replica.Name, w.net.DeadPath); derr != err {
				return derr
			}
			w.log.Warn("could not read the replica's WAL flush location", "err", err)
			return nil
		}
		if !ok {
			return nil
		}
	}
	_, err := w.originConn.Exec(ctx, `INSERT INTO pgreplica.replica (name, snapshot, updated_at)
	                                   VALUES ($1, $2::pg_snapshot, now())
	                                   ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()`,
		w.replica.Name, snap.String())
	if err != nil {
		if derr := deadPath(outer, ctx, err, "origin", w.net.DeadPath); derr != err {
			return derr
		}
		w.log.Warn("could not record position on the origin", "err", err)
		return nil
	}
	w.published = time.Now()
	return nil
}

func (w *worker) progressSeen() time.Time { return time.Unix(0, w.progress.Load()) }

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
	if from != s {
		w.status.StateSince = time.Now()
	}
	w.status.Err = ""
	if err != nil {
		w.status.Err = err.Error()
	}
	w.mu.Unlock()
	if from != s {
		w.emit(StateChanged{Replica: w.label, From: from, To: s, Err: err})
		if err == nil {
			w.log.Info("state", "state", string(s))
		}
	}
}

func (w *worker) snapshot() ReplicaStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	if s.State != Idle && s.State != Standby {
		if d := time.Since(w.progressSeen()); d > w.noProgressAfter {
			s.NoProgressFor = d.Truncate(time.Second)
		}
	}
	return s
}

// prepareApplySession sets up a replica session that applies changes.
// With n (the engine's sessions), a transaction left open by a dead path
// (its daemon gone, the server unaware) cannot hold the position row for
// long: the server ends it after DeadPath idle in the transaction, and
// notices a dead client as soon as its kernel does.
func prepareApplySession(ctx context.Context, c *pgx.Conn, set string, n *pg.Net) error {
	if n != nil {
		if _, err := c.Exec(ctx, fmt.Sprintf("SET idle_in_transaction_session_timeout = %d; %s",
			n.DeadPath/time.Millisecond, n.ServerKeepalives())); err != nil {
			return fmt.Errorf("session timeouts: %w", err)
		}
	}
	// The apply session must not capture what it applies (invariant 6): the
	// origin tag makes pgreplica's triggers skip these changes, and
	// session_replication_role=replica, where allowed, skips every ordinary
	// trigger and foreign-key check as native replication does.
	if _, err := c.Exec(ctx, "SELECT set_config('pgreplica.origin', $1, false)", set); err != nil {
		return fmt.Errorf("set origin tag: %w", err)
	}
	// Where this database also captures (cascading, multi-master), the tag
	// counts only with the token that pgreplica.begin_apply sets: a tag set
	// by anyone else does not switch capture off.
	var canBegin bool
	if err := c.QueryRow(ctx, `SELECT coalesce(has_function_privilege(to_regprocedure('pgreplica.begin_apply(text)'), 'EXECUTE'), false)`).Scan(&canBegin); err != nil {
		return fmt.Errorf("look for pgreplica.begin_apply: %w", err)
	}
	if canBegin {
		if _, err := c.Exec(ctx, "SELECT pgreplica.begin_apply($1)", set); err != nil {
			return fmt.Errorf("begin apply session: %w", err)
		}
	}
	// Values that travel as text are read in the forms the capture
	// functions write them (pg.ExactText, the settings copy and verify use).
	if _, err := c.Exec(ctx, pg.ExactTextSQL(false)); err != nil {
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

func isUndefinedTable(err error) bool { return pg.IsUndefinedTable(err) }
