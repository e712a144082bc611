package logring

import (
	"log/slog"
	"testing"
)

func TestRingKeepsLastAndNumbers(t *testing.T) {
	r := New(3)
	log := slog.New(r.Handler(slog.LevelInfo))
	log.Debug("hidden")
	for i := 0; i < 5; i++ {
		log.Info("batch applied", "replica", "r1", "events", i)
	}
	if r.Last() != 5 {
		t.Fatalf("Last() = %d, want 5", r.Last())
	}
	got := r.Since(0, 0)
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 {
		t.Fatalf("Since(0) = %+v", got)
	}
	if got[2].Get("events") != "4" || got[2].Get("replica") != "r1" {
		t.Fatalf("attrs = %+v", got[2].Attrs)
	}
	if s := r.Since(4, 0); len(s) != 1 || s[0].Seq != 5 {
		t.Fatalf("Since(4) = %+v", s)
	}
	if s := r.Since(0, 2); len(s) != 2 || s[1].Seq != 4 {
		t.Fatalf("Since(0, 2) = %+v", s)
	}
	if s := r.Since(5, 0); len(s) != 0 {
		t.Fatalf("Since(5) = %+v", s)
	}
}

func TestRecordText(t *testing.T) {
	r := New(4)
	slog.New(r.Handler(nil)).With("replica", "r 2").Warn("slow batch", "ms", 1210)
	got := r.Since(0, 0)[0].Text()
	want := got[:9] + `WARN  slow batch replica="r 2" ms=1210`
	if got != want {
		t.Fatalf("Text() = %q, want %q", got, want)
	}
}

func TestChangedWakes(t *testing.T) {
	r := New(2)
	ch := r.Changed()
	r.Add(Record{Message: "x"})
	select {
	case <-ch:
	default:
		t.Fatal("Changed channel not closed after Add")
	}
}
