package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// One engine applies a set to a replica at a time: its apply session holds
// a session-level advisory lock on the replica database, keyed by the set.
// A second engine (a standby daemon, a replicate --once) finds the lock
// taken and waits, trying again every standbyPoll; when the first engine's
// session ends (its daemon stopped or died), the lock is free and the
// standby takes over. The lock lives exactly as long as the apply session,
// so no engine ever applies without it.

// applyLockClass is the first key of pgreplica's advisory locks ("pgrp").
const applyLockClass = 0x70677270

// applyAppName is the application_name prefix of apply sessions.
const applyAppName = "pgreplica apply "

var errNoAnswer = errors.New("no answer")

// lockHolder is the session that holds a replica's apply lock.
type lockHolder struct {
	PID       int
	App       string
	State     string // pg_stat_activity.state
	Since     time.Time
	IdleFor   time.Duration // in an idle state for this long (server clock)
	Client    string
	Connected time.Time
}

func (h lockHolder) String() string {
	var parts []string
	if h.App != "" {
		app := h.App
		if h.Client != "" {
			app += " from " + h.Client
		}
		parts = append(parts, app)
	}
	if !h.Connected.IsZero() {
		parts = append(parts, "connected "+h.Connected.UTC().Format(time.RFC3339))
	}
	if h.State != "" {
		parts = append(parts, h.State+" since "+h.Since.UTC().Format(time.RFC3339))
	} else {
		// pg_stat_activity hides other roles' sessions: an orphan among
		// them cannot be recognized (nor ended) from here.
		parts = append(parts, "its state is hidden from this role: run every daemon of the set as one role, or grant pg_read_all_stats and pg_signal_backend")
	}
	return fmt.Sprintf("pid %d (%s)", h.PID, strings.Join(parts, ", "))
}

// orphan reports whether the holder looks like the apply session of an
// engine that is gone: a pgreplica apply session of this set that has done
// nothing for grace. A live engine's session is never idle that long (its
// worker polls at least every grace/3).
func (h lockHolder) orphan(set string, grace time.Duration) bool {
	return h.App == applyAppName+set && strings.HasPrefix(h.State, "idle") && h.IdleFor >= grace
}

// standbyError means another session holds the replica's apply lock.
type standbyError struct {
	replica string
	holder  lockHolder
}

func (e *standbyError) Error() string {
	return fmt.Sprintf("replica %s is applied by another pgreplica engine: %s", e.replica, e.holder)
}

// takeLock takes the replica's apply lock for this set, or returns a
// *standbyError naming its holder. A holder that is an orphaned apply
// session (its daemon died behind a dead path, so the server still thinks it
// alive) is ended with pg_terminate_backend; where this role may not, the
// error names the backend to end.
func (w *worker) takeLock(ctx context.Context) error {
	var got bool
	if err := w.replicaConn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", applyLockClass, w.set).Scan(&got); err != nil {
		return fmt.Errorf("replica %s: take the apply lock: %w", w.replica.Name, err)
	}
	if got {
		w.locked = true
		w.progress.Store(time.Now().UnixNano())
		if w.snapshot().State == Standby {
			w.log.Info("taking over: this engine now applies the replica")
		}
		return nil
	}
	h, err := applyLockHolder(ctx, w.replicaConn, w.set)
	if err != nil {
		return fmt.Errorf("replica %s: find the apply lock's holder: %w", w.replica.Name, err)
	}
	if h.PID != 0 && h.orphan(w.set, w.grace) {
		w.log.Warn("ending an orphaned apply session on the replica", "pid", h.PID, "state", h.State,
			"since", h.Since.UTC().Format(time.RFC3339), "idle_s", int(h.IdleFor.Seconds()), "grace", w.grace.String())
		var ended bool
		err := w.replicaConn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", h.PID).Scan(&ended)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return fmt.Errorf("replica %s: an orphaned pgreplica apply session %s holds the replica, and this role may not end it: run SELECT pg_terminate_backend(%d) there as a superuser or a member of pg_signal_backend",
				w.replica.Name, h, h.PID)
		}
		if err != nil {
			return fmt.Errorf("replica %s: end orphaned apply session pid %d: %w", w.replica.Name, h.PID, err)
		}
	}
	return &standbyError{replica: w.replica.Name, holder: h}
}

// applyLockHolder finds the session holding the apply lock of set in the
// connected database (PID 0 when nobody holds it any more).
func applyLockHolder(ctx context.Context, c *pgx.Conn, set string) (lockHolder, error) {
	var h lockHolder
	var app, state, client *string
	var since, connected *time.Time
	var idle *float64
	err := c.QueryRow(ctx, `
SELECT l.pid, a.application_name, a.state, a.state_change, a.backend_start, host(a.client_addr),
       extract(epoch FROM now() - a.state_change)::float8
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = $1 AND l.objid::bigint = (hashtext($2)::bigint + 4294967296) % 4294967296
 LIMIT 1`, applyLockClass, set).Scan(&h.PID, &app, &state, &since, &connected, &client, &idle)
	if errors.Is(err, pgx.ErrNoRows) {
		return lockHolder{}, nil
	}
	if err != nil {
		return lockHolder{}, err
	}
	if app != nil {
		h.App = *app
	}
	if state != nil {
		h.State = *state
	}
	if since != nil {
		h.Since = *since
	}
	if connected != nil {
		h.Connected = *connected
	}
	if client != nil {
		h.Client = *client
	}
	if idle != nil {
		h.IdleFor = time.Duration(*idle * float64(time.Second))
	}
	return h, nil
}

// setStandby records that another engine applies the replica, logging it
// when it starts and when the holder changes.
func (w *worker) setStandby(sb *standbyError) {
	prev := w.snapshot()
	w.setStatus(func(s *ReplicaStatus) { s.Holder = sb.holder.String() })
	if prev.State != Standby || !strings.HasPrefix(prev.Holder, fmt.Sprintf("pid %d ", sb.holder.PID)) {
		w.log.Info("standby: another pgreplica engine applies this replica; taking over when it stops",
			"holder_pid", sb.holder.PID, "holder", sb.holder.App, "holder_state", sb.holder.State,
			"holder_since", sb.holder.Since.UTC().Format(time.RFC3339))
	}
	w.setState(Standby, nil)
}

// positionMoved reports, after an apply failed, whether the stored position
// is no longer the one this worker applied from: then the failure was a lost
// race with another applier (it applied the same events first), not a fault
// of the data, and the worker only has to re-read the position.
func (w *worker) positionMoved(ctx context.Context) bool {
	if w.replicaConn == nil || w.replicaConn.IsClosed() {
		return false
	}
	rctx, cancel := w.within(ctx, 0)
	defer cancel()
	p, err := ReadPosition(rctx, w.replicaConn, w.set)
	if err != nil {
		return false
	}
	return p.Snapshot.String() != w.pos.Snapshot.String() || p.Target.String() != w.pos.Target.String() || p.LastID != w.pos.LastID
}
