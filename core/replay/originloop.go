package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// The engine's own work on the origin, on a connection of its own: it
// samples the sequences (pgreplica.log_sequences writes an event only when
// one moved) and looks for tables whose capture went stale (an ALTER TABLE
// without the event trigger), which it logs once each.
const (
	sampleEvery     = 2 * time.Second
	staleCheckEvery = time.Minute
)

// sampleLoop runs the origin work until ctx ends; faults are logged once
// and retried.
func (e *Engine) sampleLoop(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeSoon(conn)
		}
	}()
	failing := false
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	var staleChecked time.Time
	stale := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.sampleOnce(ctx, &conn)
		if err == nil && time.Since(staleChecked) >= staleCheckEvery {
			staleChecked = time.Now()
			err = e.checkStale(ctx, conn, stale)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			e.log.Warn("cannot sample the origin's sequences; retrying", "err", err)
			failing = true
		case err == nil && failing:
			e.log.Info("sampling the origin's sequences again")
			failing = false
		}
	}
}

func (e *Engine) sampleOnce(ctx context.Context, conn **pgx.Conn) error {
	if *conn == nil || (*conn).IsClosed() {
		c, err := pg.ConnectOrigin(ctx, e.cfg, "sequences "+e.cfg.Name)
		if err != nil {
			return err
		}
		*conn = c
	}
	if e.cfg.Source != "" {
		// Multi-master: every node draws from its own sequence range
		// (install checks), so samples of one are not applied to another.
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.net.DeadPath)
	defer cancel()
	err := SampleSequences(ctx, *conn)
	if err != nil {
		closeSoon(*conn)
		*conn = nil
	}
	return err
}

// checkStale logs each captured table whose capture function no longer
// matches its definition once, when it is found, and again when it is
// current.
func (e *Engine) checkStale(ctx context.Context, conn *pgx.Conn, stale map[string]bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.net.DeadPath)
	defer cancel()
	names, err := StaleTables(ctx, conn)
	if err != nil {
		return err
	}
	now := map[string]bool{}
	for _, n := range names {
		now[n] = true
		if !stale[n] {
			e.log.Warn("capture is stale: the table changed since its capture was made; a column added since is not replicated: run pgreplica install", "table", n)
		}
	}
	for n := range stale {
		if !now[n] {
			e.log.Info("capture is current again", "table", n)
		}
	}
	clear(stale)
	for n := range now {
		stale[n] = true
	}
	return nil
}

// StaleTables lists the captured tables of the origin (conn) whose capture
// function no longer matches their definition (an ALTER TABLE without the
// event trigger): a column added since is not replicated until install.
func StaleTables(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT pgreplica.table_name(t.tgrelid) FROM pg_trigger t
	                               WHERE t.tgname = 'pgreplica_capture' AND t.tgparentid = 0
	                                 AND NOT pgreplica.trigger_is_current(t.tgrelid)
	                               ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("origin: look for stale capture: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("origin: look for stale capture: %w", err)
	}
	return names, nil
}
