package replay

import (
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

	mu      sync.Mutex
	started time.Time
}

// Options tune an engine. Zero values are fine.
type Options struct {
	// OnEvent receives every engine event. It is called from the workers'
	// goroutines and must not block.
	OnEvent func(Event)
	// Apply chooses how batches are applied (default: auto).
	Apply ApplyMode
}

// New makes an engine for a validated config with at least one replica.
func New(cfg *config.Config, log *slog.Logger, opt Options) *Engine {
	emit := opt.OnEvent
	if emit == nil {
		emit = func(Event) {}
	}
	e := &Engine{cfg: cfg, log: log, emit: emit, wake: NewWake()}
	for _, r := range cfg.Replicas {
		w := newWorker(cfg, r, log, emit, opt.Apply)
		w.async = true
		e.workers = append(e.workers, w)
	}
	return e
}

// Status returns the current state of every replica.
func (e *Engine) Status() []ReplicaStatus {
	out := make([]ReplicaStatus, len(e.workers))
	for i, w := range e.workers {
		out[i] = w.snapshot()
	}
	return out
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
	e.log.Info("engine starting", "set", e.cfg.Name, "replicas", len(e.workers))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		listen(ctx, e.cfg.Origin.DSN, e.cfg.Name, e.cfg.PollInterval, len(e.workers), e.wake, e.log)
	}()
	if e.cfg.Purge.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.purgeLoop(ctx)
		}()
	}
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

// runWorker is one replica's loop: catch up, then wait for a notification,
// the poll interval or the end.
func (e *Engine) runWorker(ctx context.Context, w *worker) {
	dbCtx := context.WithoutCancel(ctx) // a batch in flight is finished
	defer func() {
		w.publish(dbCtx, true)
		w.disconnect()
		w.setState(Idle, nil)
	}()
	poll := time.NewTicker(e.cfg.PollInterval)
	defer poll.Stop()
	var backoff time.Duration
	var lastErr string
	var lastLogged time.Time
	for {
		woken := e.wake.C()
		started := time.Now()
		n, err := w.catchUp(dbCtx, ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
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
			}
			continue
		}
		if lastErr != "" {
			w.log.Info("replica recovered", "after", lastErr)
		}
		backoff, lastErr = 0, ""
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

// nextBackoff doubles from 500ms up to 30s for faults and up to 2m for
// errors that need the operator.
func nextBackoff(cur time.Duration, needsOperator bool) time.Duration {
	limit := 30 * time.Second
	if needsOperator {
		limit = 2 * time.Minute
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
	var wg sync.WaitGroup
	counts := make([]int, len(e.workers))
	errs := make([]error, len(e.workers))
	for i, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.disconnect()
			n, err := w.catchUp(ctx, ctx)
			counts[i], errs[i] = n, err
			if err == nil {
				w.publish(ctx, true)
			}
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
		conn, err := pg.ConnectAs(ctx, "origin", e.cfg.Origin.DSN, "pgreplica purge "+e.cfg.Name)
		if err != nil {
			e.log.Warn("purge: cannot connect", "err", err)
			continue
		}
		res, err := Purge(ctx, conn)
		conn.Close(context.WithoutCancel(ctx))
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
