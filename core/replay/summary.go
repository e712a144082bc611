package replay

import (
	"log/slog"
	"time"
)

// SummaryEvery is how often a worker logs, at INFO, one line summing the
// batches it applied since the last one; each batch is logged at DEBUG.
// At pgbench rates a line per batch would fill a log ring in seconds and
// grow a daemon's log by megabytes an hour.
const SummaryEvery = 30 * time.Second

// applySummary sums the batches applied since the last INFO line.
type applySummary struct {
	since   time.Time
	batches int
	events  int
	bytes   int
	took    time.Duration
}

// add counts one batch and logs the summary when the interval is over
// (or at once for the first batch after an idle interval, so an operator
// sees replication start).
func (s *applySummary) add(log *slog.Logger, now time.Time, events, bytes int, took time.Duration, pos Position) {
	first := s.since.IsZero()
	if first {
		s.since = now
	}
	s.batches++
	s.events += events
	s.bytes += bytes
	s.took += took
	if !first && now.Sub(s.since) < SummaryEvery {
		return
	}
	log.Info("applied", "batches", s.batches, "events", s.events, "bytes", s.bytes,
		"apply_ms", s.took.Milliseconds(), "seconds", int(now.Sub(s.since).Seconds()), "position", pos.Snapshot.String())
	*s = applySummary{since: now}
}
