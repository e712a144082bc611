package pg

import (
	"context"
	"time"
)

// Retry runs f until it succeeds, fails with an error retryable does not
// accept, or has run attempts times, pausing attempt × pause between runs.
// It returns f's last error; a cancelled ctx ends the waiting (and returns
// that last error).
func Retry(ctx context.Context, attempts int, pause time.Duration, retryable func(error) bool, f func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = f(); err == nil || attempt >= attempts || !retryable(err) {
			return err
		}
		t := time.NewTimer(time.Duration(attempt) * pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
