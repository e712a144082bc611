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
//
// It also tells the listener whether notifications are wanted: a worker
// that keeps finding events (busy) does not wait for them, so while every
// worker is busy the listener UNLISTENs, and the origin does not signal it
// at every commit; a worker that finds nothing (idle) asks for them again
// and, once the listener is listening, looks once more before it waits.
type Wake struct {
	mu        sync.Mutex
	ch        chan struct{}
	busy      map[any]bool
	changed   chan struct{} // closed when wanted may have changed
	listening bool
	listened  chan struct{} // closed when listening becomes true
}

// NewWake makes a Wake.
func NewWake() *Wake {
	return &Wake{ch: make(chan struct{}), busy: map[any]bool{}, changed: make(chan struct{}), listened: make(chan struct{})}
}

// SetBusy records whether worker w is busy (needs no notifications).
func (w *Wake) SetBusy(worker any, busy bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy[worker] == busy {
		return
	}
	w.busy[worker] = busy
	close(w.changed)
	w.changed = make(chan struct{})
}

// wanted reports whether some worker waits for notifications (or none has
// said anything yet), and the channel closed at the next change.
func (w *Wake) wanted(workers int) (bool, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, b := range w.busy {
		if b {
			n++
		}
	}
	return n < workers, w.changed
}

// setListening records the listener's state.
func (w *Wake) setListening(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on == w.listening {
		return
	}
	w.listening = on
	if on {
		close(w.listened)
	} else {
		w.listened = make(chan struct{})
	}
}

// Listening returns a channel that is closed once the listener listens.
func (w *Wake) Listening() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listened
}

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
// ends the wait on a dead path within bounds.DeadPath in all; it reconnects
// with backoff, and wakes everyone after a reconnect (notifications may have
// been lost meanwhile).
func listen(ctx context.Context, dsn, set string, bounds pg.Net, keepalive time.Duration, workers int, wake *Wake, log *slog.Logger) {
	var backoff time.Duration
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, set, bounds, keepalive, workers, wake, func() { backoff = 0 })
		wake.setListening(false)
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

func listenOnce(ctx context.Context, dsn, set string, bounds pg.Net, keepalive time.Duration, workers int, wake *Wake, connected func()) error {
	wait := bounds.DeadPath - keepalive // the ping's deadline: keepalive + wait = DeadPath
	if wait < time.Second {
		wait = time.Second
	}
	setup, cancel := context.WithTimeout(ctx, 2*bounds.ConnectTimeout+wait)
	defer cancel()
	conn, err := pg.ConnectNet(setup, "origin", dsn, "pgreplica listen "+set, bounds)
	if err != nil {
		return err
	}
	defer closeSoon(conn)
	connected()
	listening := false
	for {
		want, changed := wake.wanted(workers)
		if want != listening {
			cmd := "UNLISTEN pgreplica"
			if want {
				cmd = "LISTEN pgreplica"
			}
			lctx, cancel := context.WithTimeout(ctx, wait)
			_, err := conn.Exec(lctx, cmd)
			cancel()
			if err != nil {
				return err
			}
			listening = want
			wake.setListening(listening)
			if listening {
				// Notifications may have been missed meanwhile.
				wake.Notify()
			}
		}
		wctx, cancel := context.WithTimeout(ctx, keepalive)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-wctx.Done():
			}
		}()
		_, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			wake.Notify()
		case ctx.Err() != nil:
			return ctx.Err()
		case timedOut:
			// Keepalive or a change of what is wanted: a dead connection
			// fails here, within wait.
			pctx, cancel := context.WithTimeout(ctx, wait)
			_, err := conn.Exec(pctx, "SELECT 1")
			pingTimedOut := pctx.Err() != nil
			cancel()
			if err != nil {
				if pingTimedOut && ctx.Err() == nil {
					return fmt.Errorf("origin: no answer to the keepalive within %s: the network path looks dead; reconnecting", wait)
				}
				return err
			}
		default:
			return err
		}
	}
}
