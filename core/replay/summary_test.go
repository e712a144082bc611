package replay

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

type recorder struct{ recs []slog.Record }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.recs = append(r.recs, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// TestApplySummary: batches are summed into one INFO line per interval
// (the first batch logs at once), not one line per batch.
func TestApplySummary(t *testing.T) {
	rec := &recorder{}
	log := slog.New(rec)
	var s applySummary
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.add(log, t0, 10, 100, time.Millisecond, Position{})
	for i := 1; i <= 1000; i++ { // 1,000 batches in 29 s
		s.add(log, t0.Add(time.Duration(i)*29*time.Millisecond), 5, 50, time.Millisecond, Position{})
	}
	s.add(log, t0.Add(SummaryEvery+time.Second), 7, 70, time.Millisecond, Position{})
	if len(rec.recs) != 2 {
		t.Fatalf("%d lines for 1,002 batches, want 2", len(rec.recs))
	}
	got := map[string]any{}
	rec.recs[1].Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value.Any(); return true })
	if rec.recs[1].Level != slog.LevelInfo || rec.recs[1].Message != "applied" || got["batches"] != int64(1001) || got["events"] != int64(5007) {
		t.Fatalf("summary: %v %q %v", rec.recs[1].Level, rec.recs[1].Message, got)
	}
}
