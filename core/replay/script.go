package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Scripts (pgreplica execute) and skipped events.
//
// A script travels in the log as one event of op 'E' with the SQL and the
// search_path it ran with on the origin. It is a barrier: the events before
// it are applied (folded or not), then the script runs in the same replica
// transaction, then the events after it; the replica's table definitions
// are read again afterwards. A script that fails stops the replica with the
// statement and the server's message; pgreplica skip moves past it.
//
// A skipped event (pgreplica skip, stored in pgreplica.skipped on the
// replica) is left out of every batch. The engine reads the skipped events
// when its session starts, after any failed batch (that is when an
// operator skips one) and every skipReadEvery.

const skipReadEvery = 10 * time.Second

// script is the data of an 'E' event.
type script struct {
	SQL        string `json:"sql"`
	SearchPath string `json:"search_path"`
}

// applyWithScripts applies events, running the scripts (and sequence
// samples) among them where they stand: each splits the events into what
// comes before it and what comes after.
func (a *applier) applyWithScripts(ctx context.Context, tx session, events []*event,
	apply func(context.Context, session, []*event) ([]Conflict, error)) ([]Conflict, error) {
	var conflicts []Conflict
	start := 0
	for i, e := range events {
		if e.Op != 'E' && e.Op != 'S' {
			continue
		}
		c, err := apply(ctx, tx, events[start:i])
		if err != nil {
			return nil, err
		}
		conflicts = append(conflicts, c...)
		if e.Op == 'E' {
			err = a.runScript(ctx, tx, e)
		} else {
			err = a.setSequences(ctx, tx, e)
		}
		if err != nil {
			return nil, err
		}
		start = i + 1
	}
	if start == 0 {
		return apply(ctx, tx, events)
	}
	c, err := apply(ctx, tx, events[start:])
	if err != nil {
		return nil, err
	}
	return append(conflicts, c...), nil
}

// runScript runs one script event in tx.
func (a *applier) runScript(ctx context.Context, tx session, e *event) error {
	var s script
	if err := json.Unmarshal(e.Data, &s); err != nil || s.SQL == "" {
		return stop("replica %s: event %d is a script pgreplica cannot read (%v); skip it: pgreplica skip --replica %s --event %d",
			a.replica, e.ID, err, a.replica, e.ID)
	}
	var saved string
	if err := tx.Conn().QueryRow(ctx, "SELECT current_setting('search_path')").Scan(&saved); err != nil {
		return fmt.Errorf("read search_path: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", s.SearchPath); err != nil {
		return fmt.Errorf("set the script's search_path: %w", err)
	}
	if _, err := tx.Exec(ctx, s.SQL); err != nil {
		var pgErr *pgconn.PgError
		msg := err.Error()
		if errors.As(err, &pgErr) {
			msg = pgErr.Message + " [SQLSTATE " + pgErr.Code + "]"
		}
		return &stopError{msg: fmt.Sprintf("replica %s: the script of event %d (pgreplica execute) failed: %s; script: %s; fix the replica and retry, or move past it: pgreplica skip --replica %s --event %d",
			a.replica, e.ID, msg, oneLine(s.SQL, 200), a.replica, e.ID), err: err}
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", saved); err != nil {
		return fmt.Errorf("restore search_path: %w", err)
	}
	// Table definitions may have changed.
	clear(a.meta)
	return nil
}

// oneLine is s on one line, cut to n runes.
func oneLine(s string, n int) string {
	out := []rune{}
	space := false
	for _, r := range s {
		if r == '\n' || r == '\t' || r == ' ' || r == '\r' {
			space = true
			continue
		}
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, r)
		if len(out) >= n {
			return string(out) + "…"
		}
	}
	return string(out)
}

// skippedEvents reads the events the operator skipped on this replica,
// when due (see the package comment above).
func (a *applier) skippedEvents(ctx context.Context, tx session) (map[int64]bool, error) {
	if a.skip != nil && time.Since(a.skipRead) < skipReadEvery {
		return a.skip, nil
	}
	skip := map[int64]bool{}
	var exists bool
	if err := tx.Conn().QueryRow(ctx, "SELECT to_regclass('pgreplica.skipped') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("read skipped events: %w", err)
	}
	if !exists { // a bookkeeping schema older than skip: nothing skipped
		a.skip, a.skipRead = skip, time.Now()
		return skip, nil
	}
	rows, err := tx.Query(ctx, `SELECT event_id FROM pgreplica.skipped WHERE set_name = $1`, a.set)
	if err != nil {
		return nil, fmt.Errorf("read skipped events: %w", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read skipped events: %w", err)
		}
		skip[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read skipped events: %w", err)
	}
	a.skip, a.skipRead = skip, time.Now()
	return skip, nil
}

// setSequences applies a sample of the origin's sequences ('S' event):
// each sequence the replica has is set to the origin's value unless it is
// there already or beyond (a sequence never moves back). A sequence the
// replica lacks is left out.
func (a *applier) setSequences(ctx context.Context, tx session, e *event) error {
	_, err := tx.Exec(ctx, `
SELECT setval(q.seq, q.v, true)
  FROM (SELECT to_regclass(x.key) AS seq, x.value::bigint AS v FROM jsonb_each_text($1::jsonb) x) q
  JOIN pg_sequence ps ON ps.seqrelid = q.seq
 WHERE pg_sequence_last_value(q.seq) IS NULL OR sign(ps.seqincrement) * (q.v - pg_sequence_last_value(q.seq)) > 0`, string(e.Data))
	if err != nil {
		return a.explain(e, err)
	}
	return nil
}

// SampleSequences writes a sample of the origin's captured sequences into
// its log when any moved (pgreplica.log_sequences).
func SampleSequences(ctx context.Context, origin interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}) error {
	if _, err := origin.Exec(ctx, "SELECT pgreplica.log_sequences()"); err != nil {
		return fmt.Errorf("origin: sample sequences: %w", err)
	}
	return nil
}
