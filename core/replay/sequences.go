package replay

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// sampleEvery is how often the engine samples the origin's sequences
// (pgreplica.log_sequences writes an event only when one moved).
const sampleEvery = 2 * time.Second

// sampleLoop samples the origin's sequences until ctx ends, on a
// connection of its own; faults are logged once and retried.
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.sampleOnce(ctx, &conn)
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
	ctx, cancel := context.WithTimeout(ctx, e.net.DeadPath)
	defer cancel()
	err := SampleSequences(ctx, *conn)
	if err != nil {
		closeSoon(*conn)
		*conn = nil
	}
	return err
}
