package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// Sample records, for one measurement, how busy the machine was: the bench
// shares it with whatever else runs (builds, other tests), and two CPUs
// shared with a compiler give meaningless numbers.
type Sample struct {
	Scenario   string  `json:"scenario"`
	Who        string  `json:"who"`
	Run        int     `json:"run"`
	Value      float64 `json:"value"`
	BusyBefore float64 `json:"cpu_busy_before"` // fraction of all CPUs busy just before, bench idle
	WaitedSec  float64 `json:"waited_for_quiet_seconds"`
	Load1After float64 `json:"load1_after"`
}

// cpuTimes reads the total and idle (idle + iowait) jiffies of /proc/stat.
func cpuTimes() (total, idle uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range f[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return total, idle, true
}

// cpuBusy is the fraction of CPU time not idle over d (0 when unknown).
func cpuBusy(ctx context.Context, d time.Duration) float64 {
	t0, i0, ok := cpuTimes()
	if !ok {
		return 0
	}
	select {
	case <-ctx.Done():
		return 0
	case <-time.After(d):
	}
	t1, i1, ok := cpuTimes()
	if !ok || t1 <= t0 {
		return 0
	}
	return 1 - float64(i1-i0)/float64(t1-t0)
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// quietBudget caps the waiting for quiet over a whole bench.
const quietBudget = 25 * time.Minute

// quiet waits (up to QuietWait) until the machine is quiet while the bench
// itself is idle, and returns how busy it was at the end and how long it
// waited.
func (e *env) quiet(ctx context.Context) (busy float64, waited time.Duration) {
	start := time.Now()
	busy = cpuBusy(ctx, time.Second)
	logged := false
	limit := e.opt.QuietWait
	if left := quietBudget - e.totalWaited; left < limit {
		limit = left
	}
	for busy > e.opt.QuietBusy && time.Since(start) < limit && ctx.Err() == nil {
		if !logged {
			e.logf("  other processes keep %.0f%% of the CPUs busy; waiting up to %s for quiet", busy*100, limit.Round(time.Second))
			logged = true
		}
		time.Sleep(2 * time.Second)
		busy = cpuBusy(ctx, time.Second)
	}
	waited = time.Since(start)
	e.totalWaited += waited
	return busy, waited
}

func (e *env) note(scenario, who string, run int, value float64) {
	e.samples = append(e.samples, Sample{Scenario: scenario, Who: who, Run: run + 1, Value: value,
		BusyBefore: round3(e.busy), WaitedSec: round3(e.waited.Seconds()), Load1After: load1()})
}
