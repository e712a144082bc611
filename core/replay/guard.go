package replay

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
)

// guard bounds a wait on a server whose length depends on the work (a batch
// being applied, the first event of a big interval that the origin sorts):
// when nothing has come for two thirds of DeadPath, it asks the server over
// a fresh connection, within the last third, whether the session's backend
// is still working on the request. If it is, the wait goes on; if it is not
// (it finished and the answer was lost, or it waits on the network), or the
// server cannot be asked, the path is dead and the guarded context is
// cancelled with errNoAnswer. So a dead path is noticed within DeadPath and
// slow work is never cut short.
type guard struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	every  time.Duration
	probe  time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// guardSession guards waits on conn, a session of the server at dsn.
func (w *worker) guardSession(parent context.Context, role, dsn string, conn *pgx.Conn) *guard {
	ctx, cancel := context.WithCancelCause(parent)
	g := &guard{ctx: ctx, cancel: cancel, every: w.net.DeadPath * 2 / 3, probe: w.net.DeadPath - w.net.DeadPath*2/3}
	pid := conn.PgConn().PID()
	n := w.net
	n.ConnectTimeout = min(n.ConnectTimeout, g.probe)
	app := "pgreplica probe " + w.set + "/" + w.replica.Name
	g.timer = time.AfterFunc(g.every, func() {
		pctx, done := context.WithTimeout(ctx, g.probe)
		defer done()
		if busy(pctx, role, dsn, app, n, pid) {
			g.kick()
			return
		}
		cancel(errNoAnswer)
	})
	return g
}

// busy reports whether backend pid is working on a request: active and
// not waiting on its client, or changed state a moment ago (an answer went
// out and the next request came, as between the round trips of a batch).
func busy(ctx context.Context, role, dsn, app string, n pg.Net, pid uint32) bool {
	c, err := pg.ConnectNet(ctx, role, dsn, app, n)
	if err != nil {
		return false
	}
	defer closeSoon(c)
	var working bool
	err = c.QueryRow(ctx, `SELECT state = 'active' AND coalesce(wait_event, '') NOT IN ('ClientRead', 'ClientWrite')
	                              OR state_change > now() - interval '2 seconds'
	                         FROM pg_stat_activity WHERE pid = $1`, int64(pid)).Scan(&working)
	return err == nil && working
}

// kick restarts the wait: something came.
func (g *guard) kick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.timer.Reset(g.every)
	}
}

// pause stops the clock while the caller is not waiting on the server.
func (g *guard) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer.Stop()
}

// stop ends the guard; its context is cancelled.
func (g *guard) stop() {
	g.mu.Lock()
	g.stopped = true
	g.timer.Stop()
	g.mu.Unlock()
	g.cancel(nil)
}

// dead reports whether the guard cancelled its context for a dead path.
func (g *guard) dead() bool { return context.Cause(g.ctx) == errNoAnswer }
