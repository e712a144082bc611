package source

import (
	"context"
	"errors"
	"fmt"
)

// Retrier is a source that can make a stopped or retrying replica try
// again now instead of at the end of its backoff.
type Retrier interface {
	Retry(ctx context.Context, replica string) error
}

// Retry asks the engine in this process.
func (e *Engine) Retry(_ context.Context, replica string) error {
	e.mu.Lock()
	eng := e.eng
	e.mu.Unlock()
	if eng == nil {
		return errors.New("the engine is not running here: start it with S")
	}
	if !eng.Retry(replica) {
		return fmt.Errorf("no replica %s in the engine", replica)
	}
	return nil
}

// Retry asks the daemon, when its client can.
func (d *Daemon) Retry(ctx context.Context, replica string) error {
	r, ok := d.Client.(Retrier)
	if !ok {
		return errors.New("this daemon connection cannot retry: use pgreplica retry --replica " + replica)
	}
	return r.Retry(ctx, replica)
}
