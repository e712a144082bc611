package replay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"pgreplica/core/pg"
)

// Wake wakes any number of waiters at once: each waiter takes the current
// channel with C and waits on it; Notify closes it and makes a new one.
// Nothing is buffered and nobody blocks (litestream's Notify shape).
type Wake struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewWake makes a Wake.
func NewWake() *Wake { return &Wake{ch: make(chan struct{})} }

// C is closed at the next Notify.
func (w *Wake) C() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

// Notify wakes every current waiter.
func (w *Wake) Notify() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// listen holds a LISTEN session on the origin and wakes the workers on each
// notification. It pings the origin every keepalive, with a deadline that
// ends the wait on a dead path within net.DeadPath in all; it reconnects
// with backoff, and wakes everyone after a reconnect (notifications may have
// been lost meanwhile).
func listen(ctx context.Context, dsn, set string, net pg.Net, keepalive time.Duration, wake *Wake, log *slog.Logger) {
	var backoff time.Duration
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, set, net, keepalive, wake, func() { backoff = 0 })
		if ctx.Err() != nil {
			return
		}
		backoff = nextBackoff(backoff, false)
		log.Warn("origin notifications lost; polling meanwhile", "err", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func listenOnce(ctx context.Context, dsn, set string, net pg.Net, keepalive time.Duration, wake *Wake, connected func()) error {
	wait := net.DeadPath - keepalive // the ping's deadline: keepalive + wait = DeadPath
	if wait < time.Second {
		wait = time.Second
	}
	setup, cancel := context.WithTimeout(ctx, 2*net.ConnectTimeout+wait)
	defer cancel()
	conn, err := pg.ConnectNet(setup, "origin", dsn, "pgreplica listen "+set, net)
	if err != nil {
		return err
	}
	defer closeSoon(conn)
	if _, err := conn.Exec(setup, "LISTEN pgreplica"); err != nil {
		return err
	}
	connected()
	wake.Notify()
	for {
		wctx, cancel := context.WithTimeout(ctx, keepalive)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			wake.Notify()
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			// Keepalive: a dead connection fails here, within wait.
			pctx, cancel := context.WithTimeout(ctx, wait)
			_, err := conn.Exec(pctx, "SELECT 1")
			timedOut := pctx.Err() != nil
			cancel()
			if err != nil {
				if timedOut && ctx.Err() == nil {
					return fmt.Errorf("origin: no answer to the keepalive within %s: the network path looks dead; reconnecting", wait)
				}
				return err
			}
		default:
			return err
		}
	}
}
