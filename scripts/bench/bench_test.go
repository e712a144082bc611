package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgreplica/core/pgtest"
)

// TestQuick runs the whole bench in --quick mode and checks that the JSON
// has every scenario with positive figures for pgreplica and native
// logical replication. It proves the bench works; the numbers mean nothing.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters and runs pgbench: not in -short")
	}
	if _, err := pgtest.BinDir(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "bench.json")
	if _, err := Run(ctx, Options{Quick: true, Out: out, Log: testLog{t}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("bench.json: %v", err)
	}
	pos := func(what string, s Stat) {
		t.Helper()
		if len(s.Runs) == 0 || s.Median <= 0 || s.Min <= 0 {
			t.Errorf("%s: want positive figures, got %+v", what, s)
		}
	}
	want := map[string]bool{}
	for _, v := range []string{vNone, vCapture, vPgreplica, vNative} {
		want[v], want[v+fsyncOn] = true, true
	}
	for _, row := range rep.Overhead {
		pos("overhead "+row.Variant, row.TPS)
		if row.Ratio <= 0 {
			t.Errorf("overhead %s: ratio %v", row.Variant, row.Ratio)
		}
		delete(want, row.Variant)
	}
	for v := range want {
		t.Errorf("overhead: no %q variant", v)
	}
	for _, kind := range []string{kindTPCB, kindInserts} { // quick: apply with fsync = off only
		for _, r := range []string{"pgreplica", "native"} {
			a := rep.Apply[kind][r]
			if a == nil {
				t.Errorf("apply %s: no %s", kind, r)
				continue
			}
			pos("apply "+kind+" "+r+" seconds", a.Seconds)
			pos("apply "+kind+" "+r+" row changes/s", a.ChangesPerSec)
			pos("apply "+kind+" "+r+" transactions/s", a.TxnsPerSec)
			if a.RatioToNative <= 0 {
				t.Errorf("apply %s %s: ratio to native %v", kind, r, a.RatioToNative)
			}
		}
		// Every row change is an event, except a TPC-B UPDATE whose random
		// delta is 0: it changes nothing, and pgreplica logs no event for it
		// (by design). pgbench draws delta from [-5000, 5000], so that is
		// about 3 updates in 10,001 transactions; allow 0.1% for TPC-B.
		if p := rep.Apply[kind]["pgreplica"]; p != nil {
			short := p.Changes - p.Events
			if base, _ := splitVariant(kind); short > 0 && (base == kindInserts || float64(short) > 0.001*float64(p.Changes)) {
				t.Errorf("apply %s: pgreplica logged %d events for %d row changes", kind, p.Events, p.Changes)
			}
		}
	}
	for _, r := range []string{"pgreplica", "native"} {
		l := rep.Lag[r]
		if l == nil {
			t.Errorf("lag: no %s", r)
			continue
		}
		pos("lag "+r+" p50", l.P50)
		pos("lag "+r+" p95", l.P95)
		pos("lag "+r+" p99", l.P99)
		if l.Probes <= 0 || l.Lost != 0 {
			t.Errorf("lag %s: %d probes arrived, %d lost", r, l.Probes, l.Lost)
		}
	}
	if f := rep.Footprint; f == nil {
		t.Error("no footprint")
	} else {
		pos("footprint peak RSS", f.PeakRSSKB)
		pos("footprint CPU seconds", f.CPUSeconds)
		pos("footprint log bytes per event", f.LogBytesPerEvent)
		pos("footprint peak RSS (tenth backlog)", f.SmallPeakRSSKB)
	}
	if o := rep.OldTxn[""]; o == nil || len(o.With) != 2 || len(o.Without) != 2 {
		t.Errorf("old open transaction: want 2 intervals with and without, got %+v", o)
	} else {
		for i := range o.With {
			pos("old open transaction, with, interval "+itoa(i+1), o.With[i])
			pos("old open transaction, without, interval "+itoa(i+1), o.Without[i])
		}
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets")
	}
	t.Logf("\n%s", rep.Markdown())
}

func itoa(i int) string { return fmt.Sprint(i) }

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", p)
	return len(p), nil
}
