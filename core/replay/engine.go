package replay

import (
	"github.com/jackc/pgx/v5"

	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// ReplicaStatus is one replica as the running engine sees it: an immutable
// value handed to the daemon's control endpoint and the TUI.
type ReplicaStatus struct {
	Name          string
	State         State
	Err           string
	Position      Position
	LastApplied   time.Time
	AppliedEvents int64 // by this engine since it started
	Conflicts     int   // found by this engine since it started
	LastBatch     BatchApplied
	// StateSince is when the worker entered State.
	StateSince time.Time
	// CaughtUpAt is the heartbeat: when the origin snapshot that the
	// replica last fully applied was taken (everything committed on the
	// origin before it is on the replica). It moves on every poll of an
	// idle origin and stands still while the replica is stopped or
	// unreachable, so now - CaughtUpAt is a lag that is right on an idle
	// origin and never 0 while broken. Zero until the first catch-up.
	CaughtUpAt time.Time
	// NoProgressFor is how long the worker has neither applied a batch nor
	// found itself caught up, when that is longer than noProgressAfter: a
	// replica that applies nothing although it may have events pending.
	NoProgressFor time.Duration
	// Holder is, for Standby, the session that applies the replica instead.
	Holder string
	// Held are the tables held on the replica (their events do not fit
	// it: held.go), as the last batch found them.
	Held []string
}

// Engine replays a replication set from its origin to every replica. Each
// replica has its own worker, so a slow or broken replica holds no other
// back.
type Engine struct {
	cfg     *config.Config
	log     *slog.Logger
	emit    func(Event)
	wake    *Wake
	workers []*worker
	net     pg.Net

	mu      sync.Mutex
	started time.Time

	// parts are, on a multi-master set, the engines of its directions: one
	// per source node, each an ordinary one-way engine (the fields above
	// are then unused but cfg, log and emit).
	parts []*Engine
}

// Options tune an engine. Zero values are fine.
type Options struct {
	// OnEvent receives every engine event. It is called from the workers'
	// goroutines and must not block.
	OnEvent func(Event)
	// Apply chooses how batches are applied (default: auto).
	Apply ApplyMode
	// Node, on a multi-master set, limits the engine to the directions
	// into that node (a daemon per node); "" drives every direction.
	Node string
}

// New makes an engine for a validated config with at least one replica.
func New(cfg *config.Config, log *slog.Logger, opt Options) *Engine {
	emit := opt.OnEvent
	if emit == nil {
		emit = func(Event) {}
	}
	e := &Engine{cfg: cfg, log: log, emit: emit, wake: NewWake(), net: netOf(cfg)}
	if cfg.MultiMaster() {
		for _, d := range cfg.Directions(opt.Node) {
			e.parts = append(e.parts, New(d, log.With("source", d.Source), opt))
		}
		return e
	}
	for _, r := range cfg.Connected() { // file replicas are fed by bundles
		w := newWorker(cfg, r, log, emit, opt.Apply)
		w.async = true
		e.workers = append(e.workers, w)
	}
	return e
}

// Status returns the current state of every replica.
func (e *Engine) Status() []ReplicaStatus {
	if e.parts != nil {
		var out []ReplicaStatus
		for _, p := range e.parts {
			out = append(out, p.Status()...)
		}
		return out
	}
	out := make([]ReplicaStatus, len(e.workers))
	for i, w := range e.workers {
		out[i] = w.snapshot()
	}
	return out
}

// Retry makes the worker of replica name retry at once instead of waiting
// for the end of its backoff. It reports false when there is no such
// replica. It never blocks.
func (e *Engine) Retry(name string) bool {
	for _, p := range e.parts {
		if p.Retry(name) {
			return true
		}
	}
	for _, w := range e.workers {
		if w.label == name {
			select {
			case w.retry <- struct{}{}:
			default: // a retry is already asked for
			}
			return true
		}
	}
	return false
}

// Started is when Run began (zero before).
func (e *Engine) Started() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started
}

// Run replays until ctx is cancelled, then finishes the batch in flight and
// returns nil. Faults are retried with backoff, never returned: a worker
// whose replica needs the operator stays Stopped and retries slowly.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.started = time.Now()
	e.mu.Unlock()
	if e.parts != nil {
		e.log.Info("engine starting", "set", e.cfg.Name, "nodes", len(e.cfg.Nodes), "directions", len(e.Status()))
		var wg sync.WaitGroup
		for _, p := range e.parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.Run(ctx)
			}()
		}
		wg.Wait()
		e.log.Info("engine stopped", "set", e.cfg.Name)
		return nil
	}
	e.log.Info("engine starting", "set", e.cfg.Name, "replicas", len(e.workers))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		listen(ctx, e.cfg.Origin.DSN, e.cfg.Name, e.net, min(e.cfg.PollInterval, e.net.DeadPath/3), len(e.workers), e.wake, e.log)
	}()
	if e.cfg.Purge.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.purgeLoop(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.sampleLoop(ctx)
	}()
	for _, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runWorker(ctx, w)
		}()
	}
	wg.Wait()
	e.log.Info("engine stopped", "set", e.cfg.Name)
	return nil
}

// netOf is the connection bounds of a config.
func netOf(cfg *config.Config) pg.Net {
	return pg.Net{ConnectTimeout: cfg.Timeouts.Connect, DeadPath: cfg.Timeouts.DeadPath}
}

// stopGrace is how long a batch in flight may still take after the engine
// is told to stop; then its I/O is cut, so that a stop never waits on a dead
// path. An unfinished batch is rolled back and applied again at the next
// start.
func stopGrace(n pg.Net) time.Duration { return min(10*time.Second, n.DeadPath) }

// runWorker is one replica's loop: catch up, then wait for a notification,
// the poll interval or the end.
func (e *Engine) runWorker(ctx context.Context, w *worker) {
	// A batch in flight is finished, within stopGrace.
	dbCtx, cancelDB := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDB()
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(stopGrace(e.net), cancelDB) })
	defer stopAfter()
	defer func() {
		pctx, cancel := context.WithTimeout(dbCtx, min(5*time.Second, e.net.DeadPath))
		if err := w.publish(pctx, true); err != nil {
			w.log.Warn("could not record the position on the origin at stop", "err", err)
		}
		cancel()
		w.disconnect()
		w.setState(Idle, nil)
	}()
	// A live apply session is never idle for an orphan's grace period, so
	// that a standby does not take it for one.
	poll := time.NewTicker(min(e.cfg.PollInterval, e.cfg.Timeouts.OrphanGrace/3))
	defer poll.Stop()
	var backoff time.Duration
	var lastErr string
	var lastLogged time.Time
	for {
		woken := e.wake.C()
		started := time.Now()
		n, err := w.catchUpThroughLocks(dbCtx, ctx)
		if ctx.Err() != nil {
			return
		}
		var sb *standbyError
		if errors.As(err, &sb) {
			// Another engine applies this replica: wait, keep the session,
			// and try for the lock again shortly.
			backoff, lastErr = 0, ""
			w.setStandby(sb)
			select {
			case <-ctx.Done():
				return
			case <-time.After(standbyPoll):
			}
			continue
		}
		if err != nil {
			if lastErr == "" {
				w.downSince = time.Now()
			}
			w.disconnect()
			backoff = nextBackoff(backoff, IsStop(err))
			state := Retrying
			if IsStop(err) {
				state = Stopped
			}
			w.setState(state, err)
			// A repeated error is logged at most once a minute.
			if err.Error() != lastErr || time.Since(lastLogged) > time.Minute {
				w.log.Error("replica error", "err", err.Error(), "state", string(state), "retry_in", backoff.String())
				lastErr, lastLogged = err.Error(), time.Now()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			case <-w.retry:
				w.log.Info("retrying now, as asked")
			}
			continue
		}
		if lastErr != "" {
			w.log.Info("replica recovered", "after", lastErr, "down_for", time.Since(w.downSince).Round(time.Millisecond).String())
		}
		backoff, lastErr = 0, ""
		select {
		case <-w.retry: // asked while working: nothing to cut short
		default:
		}
		w.setState(Streaming, nil)
		if n > 0 {
			// Busy: let more transactions commit before the next catch-up,
			// so that a high rate of small transactions is applied in fewer,
			// larger batches (each costs round trips and statements on both
			// servers). No notification is awaited (nor, while every worker
			// is busy, even received).
			e.wake.SetBusy(w, true)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(started.Add(minCatchUpEvery))):
			}
			continue
		}
		e.wake.SetBusy(w, false)
		select {
		case <-e.wake.Listening():
		default:
			// Notifications were off: look once more when they are on again
			// (what committed before that sent none), or after a short
			// while if the listener cannot connect (the poll covers it).
			select {
			case <-ctx.Done():
				return
			case <-e.wake.Listening():
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-woken:
		case <-poll.C:
		}
	}
}

// minCatchUpEvery is the shortest time between the starts of two
// catch-ups while busy: it adds at most that much to the lag (measured:
// 2 ms costs the machine 6–12 % more CPU per origin transaction than 5 ms
// at full TPC-B speed; 10 ms, or a pause growing with the catch-up's
// duration, puts lag p99 at 200 TPS above 15 ms on a busy machine).
const minCatchUpEvery = 5 * time.Millisecond

// standbyPoll is how often a standby tries to take over.
const standbyPoll = time.Second

// nextBackoff goes from 500ms to 1s for faults, so that a worker resumes
// within about a second of a server coming back (a retry of a fault is a
// cheap connect attempt, bounded by the connect timeout), and doubles up to
// 30s for errors that need the operator (a retry re-reads and re-applies a
// batch).
func nextBackoff(cur time.Duration, needsOperator bool) time.Duration {
	limit := time.Second
	if needsOperator {
		limit = 30 * time.Second
	}
	switch {
	case cur == 0:
		return 500 * time.Millisecond
	case cur*2 > limit:
		return limit
	}
	return cur * 2
}

// Once applies everything committed on the origin to every replica and
// returns (rserv's Replicate). The replicas are done in parallel; the
// errors of all are returned together.
func (e *Engine) Once(ctx context.Context) (int, error) {
	if e.parts != nil {
		var wg sync.WaitGroup
		counts := make([]int, len(e.parts))
		errs := make([]error, len(e.parts))
		for i, p := range e.parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				counts[i], errs[i] = p.Once(ctx)
			}()
		}
		wg.Wait()
		total := 0
		for _, n := range counts {
			total += n
		}
		return total, errors.Join(errs...)
	}
	// The sequences as they are now travel with what is applied below.
	var seq *pgx.Conn
	if err := e.sampleOnce(ctx, &seq); err != nil {
		return 0, err
	}
	closeSoon(seq)
	var wg sync.WaitGroup
	counts := make([]int, len(e.workers))
	errs := make([]error, len(e.workers))
	for i, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.disconnect()
			n, err := w.catchUpThroughLocks(ctx, ctx)
			var sb *standbyError
			// The session of an engine that just stopped may hold the lock
			// for a moment longer: look again before leaving it to another.
			for try := 0; try < 3 && errors.As(err, &sb); try++ {
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
					n, err = w.catchUpThroughLocks(ctx, ctx)
				}
			}
			if errors.As(err, &sb) {
				// A running engine applies this replica: it is its job.
				w.log.Warn("not applied here: a running pgreplica engine applies this replica", "holder", sb.holder.String())
				err = nil
			}
			if err == nil {
				err = w.publish(ctx, true)
			}
			counts[i], errs[i] = n, err
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	if err := errors.Join(errs...); err != nil {
		return total, err
	}
	if ctx.Err() != nil {
		return total, ctx.Err()
	}
	return total, nil
}

func (e *Engine) purgeLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.Purge.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conn, err := pg.ConnectOrigin(ctx, e.cfg, "purge "+e.cfg.Name)
		if err != nil {
			e.log.Warn("purge: cannot connect", "err", err)
			continue
		}
		// A purge deletes at most what has piled up since the last one.
		pctx, cancel := context.WithTimeout(ctx, e.net.DeadPath+e.cfg.Purge.Interval)
		res, err := Purge(pctx, conn)
		if err == nil && e.cfg.Source != "" {
			err = purgeLedger(pctx, conn, e.cfg.Conflicts.Kept(), e.log)
		}
		cancel()
		closeSoon(conn)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("purge failed", "err", err)
			}
			continue
		}
		if res.Truncated+res.Deleted > 0 {
			e.log.Info("log purged", "truncated", res.Truncated, "deleted", res.Deleted, "kept", res.Kept)
		}
	}
}
