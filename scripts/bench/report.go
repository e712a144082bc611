package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Stat is one figure over the runs.
type Stat struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

func (s *Stat) add(v float64) { s.Runs = append(s.Runs, v) }

func (s *Stat) finish() {
	if len(s.Runs) == 0 {
		return
	}
	v := append([]float64{}, s.Runs...)
	sort.Float64s(v)
	s.Min, s.Max = v[0], v[len(v)-1]
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
}

// Meta describes the machine and the parameters.
type Meta struct {
	Date            string   `json:"date"`
	PostgresVersion string   `json:"postgres_version"`
	CPUs            int      `json:"cpus"`
	Quick           bool     `json:"quick"`
	Runs            int      `json:"runs"`
	Scale           int      `json:"scale"`
	Clients         int      `json:"clients"`
	SecondsPerRun   int      `json:"seconds_per_run"`
	TPCBTxns        int      `json:"tpcb_backlog_txns"`
	Inserts         int      `json:"insert_backlog_rows"`
	InsertTxnRows   int      `json:"insert_rows_per_txn"`
	LagTPS          int      `json:"lag_tps"`
	LagSeconds      int      `json:"lag_seconds"`
	OldTxnTPS       int      `json:"old_transaction_tps"`
	OldTxnInterval  float64  `json:"old_transaction_interval_seconds"`
	Slony           bool     `json:"slony"`
	Duration        float64  `json:"duration_seconds"`
	Notes           []string `json:"notes"`
}

// OverheadRow is one variant of scenario 1.
type OverheadRow struct {
	Variant      string  `json:"variant"`
	TPS          Stat    `json:"tps"`
	Ratio        float64 `json:"ratio_to_none"`
	CPUms        Stat    `json:"cpu_ms_per_txn"`        // both servers, replicator, pgbench
	OriginCPUms  Stat    `json:"origin_cpu_ms_per_txn"` // the origin server alone
	CPURatio     float64 `json:"cpu_ratio_to_none"`     // none's CPU per txn / this one's: the TPS ratio a CPU-bound machine would see
	OriginCPURat float64 `json:"origin_cpu_ratio_to_none"`
}

// ApplyResult is one replicator on one backlog of scenario 2.
type ApplyResult struct {
	Changes       int64   `json:"row_changes"`
	Txns          int64   `json:"transactions"`
	Seconds       Stat    `json:"seconds"`
	ChangesPerSec Stat    `json:"row_changes_per_second"`
	TxnsPerSec    Stat    `json:"transactions_per_second"`
	RatioToNative float64 `json:"ratio_to_native"`
	CPUus         Stat    `json:"cpu_us_per_row_change"` // both servers and the replicator during the catch-up
	Events        int64   `json:"events,omitempty"`      // pgreplica: events in the log
	PeakRSSKB     *Stat   `json:"peak_rss_kb,omitempty"`
	CPUSeconds    *Stat   `json:"cpu_seconds,omitempty"`
	LogBytesPerEv *Stat   `json:"log_bytes_per_event,omitempty"`
}

// LagResult is one replicator in scenario 3.
type LagResult struct {
	P50    Stat  `json:"p50_ms"`
	P95    Stat  `json:"p95_ms"`
	P99    Stat  `json:"p99_ms"`
	Max    Stat  `json:"max_ms"`
	TPS    Stat  `json:"tps"`
	Probes int64 `json:"probes"`
	Lost   int64 `json:"probes_lost"`
}

// Footprint is scenario 4 (pgreplica only).
type Footprint struct {
	PeakRSSKB        Stat  `json:"peak_rss_kb"`
	CPUSeconds       Stat  `json:"cpu_seconds"`
	LogBytesPerEvent Stat  `json:"log_bytes_per_event"`
	Events           int64 `json:"events"`
	SmallPeakRSSKB   Stat  `json:"peak_rss_kb_tenth_backlog"`
	SmallEvents      int64 `json:"events_tenth_backlog"`
}

// OldTxnResult is scenario 5: the CPU seconds of pgreplica's reading
// session on the origin per interval, without and with an old open writing
// transaction.
type OldTxnResult struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	TPS             int     `json:"tps"`
	Without         []Stat  `json:"without_cpu_seconds"`
	With            []Stat  `json:"with_cpu_seconds"`
	Ratio           float64 `json:"ratio_total"`      // with / without, sum of the interval medians
	Growth          float64 `json:"ratio_last_first"` // with: last interval / first
}

// Target is one goal of the issue against the measurement.
type Target struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// Report is everything measured, as written to JSON.
type Report struct {
	Meta      Meta                               `json:"meta"`
	Overhead  []*OverheadRow                     `json:"overhead"`
	Apply     map[string]map[string]*ApplyResult `json:"apply"` // backlog -> replicator
	Lag       map[string]*LagResult              `json:"lag"`
	Footprint *Footprint                         `json:"footprint,omitempty"`
	OldTxn    map[string]*OldTxnResult           `json:"old_open_transaction,omitempty"` // by compared binary ("": the main one)
	// MultiMaster is a multi-master node's TPS with capture and the other
	// node applying, against no capture (multimaster scenario).
	MultiMaster *MultiMasterResult `json:"multi_master,omitempty"`
	Targets     []Target           `json:"targets"`
	Samples     []Sample           `json:"samples"`
}

func newReport(e *env) *Report {
	o := e.opt
	r := &Report{
		Meta: Meta{Date: time.Now().UTC().Format(time.RFC3339), PostgresVersion: e.pgVersion, CPUs: cpus(),
			Quick: o.Quick, Runs: o.Runs, Scale: o.Scale, Clients: o.Clients, SecondsPerRun: o.Seconds,
			TPCBTxns: o.TPCBTxns, Inserts: o.Inserts, InsertTxnRows: o.InsertTxnRows, LagTPS: o.LagTPS,
			LagSeconds: o.LagSeconds, Slony: e.slony != nil, OldTxnTPS: o.OldTxnTPS, OldTxnInterval: o.OldTxnInterval.Seconds(),
			Notes: []string{
				"both clusters run on this machine with fsync = off and full_page_writes = off (synchronous_commit = on, wal_level = logical, shared_buffers = 128MB; the same for every variant): figures are for relative comparison, not what a server with durable commits does; rows marked \"(fsync on)\" have fsync = on and full_page_writes = on on both clusters (PostgreSQL's default durability)",
				"each run rotates the order of the variants/replicators so that machine drift affects all; medians with min and max",
				"pgbench_history has a bigserial primary key in every variant",
				"pgreplica: default config (batch 5000 events, poll 2s + NOTIFY); timed as the wall time of `pgreplica replicate --once` (apply) or `pgreplica run` (overhead, lag) as subprocesses",
				"native: a fresh subscription (copy_data = false) per measurement; apply is timed from ALTER SUBSCRIPTION ENABLE until a marker row committed after the backlog is visible on the replica",
				"lag: a probe row inserted every 20 ms on the origin; an ENABLE ALWAYS trigger on the replica records clock_timestamp() - t0 on arrival (one machine, one clock)",
				fmt.Sprintf("insert backlog: one event per row, %d rows per origin transaction (INSERT ... SELECT generate_series)", o.InsertTxnRows),
			}},
		Apply: map[string]map[string]*ApplyResult{},
		Lag:   map[string]*LagResult{},
	}
	if e.slony != nil {
		r.Meta.Notes = append(r.Meta.Notes,
			"Slony-I 2.2: slon -s 100 -t 1000 (SYNC every 100 ms when busy; default 2 s); apply timed from starting the subscriber's slon (the origin's slon kept making SYNCs during the backlog) until the marker is visible",
			"Slony-I log triggers alone: the origin's _bench_logtrigger on every table with no slon running (the log is caught up, untimed, after each such run)")
	}
	for _, v := range e.overheadVariants() {
		if o.want("overhead") {
			r.Overhead = append(r.Overhead, &OverheadRow{Variant: v})
		}
	}
	return r
}

func (r *Report) addOverhead(v string, s overheadSample) {
	for _, row := range r.Overhead {
		if row.Variant == v {
			row.TPS.add(s.TPS)
			row.CPUms.add(1000 * s.CPU / float64(s.Txns))
			row.OriginCPUms.add(1000 * s.OriginCPU / float64(s.Txns))
		}
	}
}

func (r *Report) addApply(kind, rep string, s applySample) {
	if kind == kindSmall {
		if r.Footprint == nil {
			r.Footprint = &Footprint{}
		}
		r.Footprint.SmallPeakRSSKB.add(float64(s.MaxRSS))
		r.Footprint.SmallEvents = s.Events
		return
	}
	m := r.Apply[kind]
	if m == nil {
		m = map[string]*ApplyResult{}
		r.Apply[kind] = m
	}
	a := m[rep]
	if a == nil {
		a = &ApplyResult{}
		if rep == "pgreplica" {
			a.PeakRSSKB, a.CPUSeconds, a.LogBytesPerEv = &Stat{}, &Stat{}, &Stat{}
		}
		m[rep] = a
	}
	a.Changes, a.Txns = s.Changes, s.Txns
	a.Seconds.add(s.Seconds)
	a.ChangesPerSec.add(float64(s.Changes) / s.Seconds)
	a.TxnsPerSec.add(float64(s.Txns) / s.Seconds)
	a.CPUus.add(1e6 * s.SysCPU / float64(s.Changes))
	if rep == "pgreplica" {
		a.Events = s.Events
		a.PeakRSSKB.add(float64(s.MaxRSS))
		a.CPUSeconds.add(s.CPU)
		if s.Events > 0 {
			a.LogBytesPerEv.add(float64(s.LogBytes) / float64(s.Events))
		}
		if kind == kindInserts {
			if r.Footprint == nil {
				r.Footprint = &Footprint{}
			}
			r.Footprint.PeakRSSKB.add(float64(s.MaxRSS))
			r.Footprint.CPUSeconds.add(s.CPU)
			if s.Events > 0 {
				r.Footprint.LogBytesPerEvent.add(float64(s.LogBytes) / float64(s.Events))
			}
			r.Footprint.Events = s.Events
		}
	}
}

func (r *Report) addOldTxn(bin string, open bool, s oldTxnSample) {
	if r.OldTxn == nil {
		r.OldTxn = map[string]*OldTxnResult{}
	}
	if r.OldTxn[bin] == nil {
		r.OldTxn[bin] = &OldTxnResult{}
	}
	list := &r.OldTxn[bin].Without
	if open {
		list = &r.OldTxn[bin].With
	}
	for i, v := range s.CPU {
		if i >= len(*list) {
			*list = append(*list, Stat{})
		}
		(*list)[i].add(v)
	}
}

func (r *Report) addLag(rep string, s lagSample) {
	l := r.Lag[rep]
	if l == nil {
		l = &LagResult{}
		r.Lag[rep] = l
	}
	l.P50.add(s.P50)
	l.P95.add(s.P95)
	l.P99.add(s.P99)
	l.Max.add(s.Max)
	l.TPS.add(s.TPS)
	l.Probes += s.Probes
	l.Lost += s.Lost
}

func (r *Report) finish(d time.Duration) {
	r.Meta.Duration = math.Round(d.Seconds())
	// Ratios are to "none" at the same durability.
	none := map[string]*OverheadRow{}
	for _, row := range r.Overhead {
		row.TPS.finish()
		row.CPUms.finish()
		row.OriginCPUms.finish()
		if base, d := splitVariant(row.Variant); base == vNone {
			none[d] = row
		}
	}
	for _, row := range r.Overhead {
		_, d := splitVariant(row.Variant)
		n := none[d]
		if n == nil {
			continue
		}
		if n.TPS.Median > 0 {
			row.Ratio = round3(row.TPS.Median / n.TPS.Median)
		}
		if row.CPUms.Median > 0 {
			row.CPURatio = round3(n.CPUms.Median / row.CPUms.Median)
		}
		if row.OriginCPUms.Median > 0 {
			row.OriginCPURat = round3(n.OriginCPUms.Median / row.OriginCPUms.Median)
		}
	}
	for _, o := range r.OldTxn {
		var with, without float64
		for i := range o.Without {
			o.Without[i].finish()
			without += o.Without[i].Median
		}
		for i := range o.With {
			o.With[i].finish()
			with += o.With[i].Median
		}
		if without > 0 {
			o.Ratio = round3(with / without)
		}
		if len(o.With) > 0 && o.With[0].Median > 0 {
			o.Growth = round3(o.With[len(o.With)-1].Median / o.With[0].Median)
		}
	}
	for _, m := range r.Apply {
		for _, a := range m {
			for _, s := range []*Stat{&a.Seconds, &a.ChangesPerSec, &a.TxnsPerSec, &a.CPUus, a.PeakRSSKB, a.CPUSeconds, a.LogBytesPerEv} {
				if s != nil {
					s.finish()
				}
			}
		}
		if n := m["native"]; n != nil && n.ChangesPerSec.Median > 0 {
			for _, a := range m {
				a.RatioToNative = round3(a.ChangesPerSec.Median / n.ChangesPerSec.Median)
			}
		}
	}
	for _, l := range r.Lag {
		for _, s := range []*Stat{&l.P50, &l.P95, &l.P99, &l.Max, &l.TPS} {
			s.finish()
		}
	}
	if f := r.Footprint; f != nil {
		for _, s := range []*Stat{&f.PeakRSSKB, &f.CPUSeconds, &f.LogBytesPerEvent, &f.SmallPeakRSSKB} {
			s.finish()
		}
	}
	r.Targets = r.targets()
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func (r *Report) overheadRatio(v string) (float64, bool) {
	for _, row := range r.Overhead {
		if row.Variant == v && row.TPS.Median > 0 {
			return row.Ratio, true
		}
	}
	return 0, false
}

func (r *Report) targets() []Target {
	var t []Target
	for _, suffix := range []string{"", fsyncOn} {
		pr, ok := r.overheadRatio(vPgreplica + suffix)
		if !ok {
			continue
		}
		for _, peer := range []string{vNative, vSlony} {
			if x, ok := r.overheadRatio(peer + suffix); ok {
				t = append(t, Target{"origin TPS ratio with pgreplica capture + applier ≥ " + peer + "'s" + suffix,
					fmt.Sprintf("%.3f× vs %.3f×", pr, x), pr >= x})
			}
		}
		if c, ok := r.overheadRatio(vCapture + suffix); ok {
			t = append(t, Target{"capture triggers alone ≥ 0.80 × no replication by TPS" + suffix,
				fmt.Sprintf("%.3f×", c), c >= 0.80})
		}
		// The same by CPU cost, which other processes on the machine do not disturb.
		cpu := map[string]float64{}
		for _, row := range r.Overhead {
			cpu[row.Variant] = row.CPURatio
		}
		for _, peer := range []string{vNative, vSlony} {
			if x, ok := cpu[peer+suffix]; ok {
				t = append(t, Target{"(by CPU per transaction) pgreplica capture + applier ≥ " + peer + "'s" + suffix,
					fmt.Sprintf("%.3f× vs %.3f×", cpu[vPgreplica+suffix], x), cpu[vPgreplica+suffix] >= x})
			}
		}
	}
	for _, kind := range applyKinds() {
		m := r.Apply[kind]
		if m == nil || m["pgreplica"] == nil || m["native"] == nil {
			continue
		}
		p, n := m["pgreplica"], m["native"]
		t = append(t, Target{fmt.Sprintf("apply rate on the %s backlog ≥ 1.0 × native", backlogName(kind)),
			fmt.Sprintf("%.0f vs %.0f row changes/s (%.2f×)", p.ChangesPerSec.Median, n.ChangesPerSec.Median, p.RatioToNative),
			p.RatioToNative >= 1.0})
	}
	if o := r.OldTxn[""]; o != nil && o.Ratio > 0 {
		t = append(t, Target{"reading CPU with a writing transaction open ≤ 1.5 × without",
			fmt.Sprintf("%.2f× over %d min", o.Ratio, len(o.With)), o.Ratio <= 1.5})
		t = append(t, Target{"… and flat over time (last minute ≤ 1.5 × the first)",
			fmt.Sprintf("%.2f×", o.Growth), o.Growth <= 1.5})
	}
	if l := r.Lag["pgreplica"]; l != nil {
		t = append(t, Target{"lag p50 ≤ 5 ms at 200 TPS", fmt.Sprintf("%.2f ms", l.P50.Median), l.P50.Median <= 5})
		t = append(t, Target{"lag p99 ≤ 15 ms at 200 TPS", fmt.Sprintf("%.2f ms", l.P99.Median), l.P99.Median <= 15})
	}
	if f := r.Footprint; f != nil && f.PeakRSSKB.Median > 0 {
		t = append(t, Target{fmt.Sprintf("peak RSS ≤ 64 MB during the %s-event backlog", thousands(f.Events)),
			fmt.Sprintf("%.1f MB", f.PeakRSSKB.Max/1024), f.PeakRSSKB.Max <= 64*1024})
		if f.SmallPeakRSSKB.Median > 0 {
			grow := f.PeakRSSKB.Median - f.SmallPeakRSSKB.Median
			t = append(t, Target{"memory does not grow with the backlog (peak RSS at 10× the backlog within 8 MB)",
				fmt.Sprintf("%.1f MB at %s events, %.1f MB at %s", f.PeakRSSKB.Median/1024, thousands(f.Events),
					f.SmallPeakRSSKB.Median/1024, thousands(f.SmallEvents)), grow <= 8*1024})
		}
	}
	return t
}

func backlogName(kind string) string {
	base, d := splitVariant(kind)
	if base == kindTPCB {
		return "TPC-B" + durabilitySuffix(d)
	}
	return "single-row insert" + durabilitySuffix(d)
}

// applyKinds are the apply backlogs in the order of the table.
func applyKinds() []string {
	return []string{kindTPCB, kindInserts, kindTPCB + fsyncOn, kindInserts + fsyncOn}
}

func (r *Report) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(absPath(path)), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// thousands formats 1234567 as 1,234,567.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func num(v float64) string { return thousands(int64(math.Round(v))) }

func mmm(s Stat, f func(float64) string) string {
	if len(s.Runs) <= 1 {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

func ms(v float64) string  { return fmt.Sprintf("%.2f", v) }
func ms3(v float64) string { return fmt.Sprintf("%.3f", v) }
func sec(v float64) string { return fmt.Sprintf("%.2f", v) }
func mb(v float64) string  { return fmt.Sprintf("%.1f", v/1024) }

func replicatorName(r string) string {
	switch r {
	case "native":
		return "native logical replication"
	case "slony":
		return "Slony-I"
	}
	return r
}

// Markdown is the report as markdown tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Meta
	mode := ""
	if m.Quick {
		mode = " — quick mode (smoke test, not a measurement)"
	}
	fmt.Fprintf(&b, "## pgreplica benchmark%s\n\n", mode)
	fmt.Fprintf(&b, "PostgreSQL %s, %d CPUs, %s; medians of %d interleaved run(s), (min–max) when more than one; %s.\n\n",
		m.PostgresVersion, m.CPUs, m.Date, m.Runs, (time.Duration(m.Duration) * time.Second).String())
	if len(r.Overhead) > 0 {
		fmt.Fprintf(&b, "### Origin overhead — pgbench TPC-B, scale %d, %d clients, %d s\n\n", m.Scale, m.Clients, m.SecondsPerRun)
		b.WriteString("| variant | TPS | ratio to none | CPU ms/txn, all | ratio by CPU | origin server CPU ms/txn | ratio by origin CPU |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range r.Overhead {
			fmt.Fprintf(&b, "| %s | %s | %.3f | %s | %.3f | %s | %.3f |\n", row.Variant, mmm(row.TPS, num), row.Ratio,
				mmm(row.CPUms, ms3), row.CPURatio, mmm(row.OriginCPUms, ms3), row.OriginCPURat)
		}
		b.WriteString("\n\"CPU ms/txn, all\": user + system CPU of both servers, the replicator's processes and pgbench per transaction; " +
			"\"ratio by CPU\" = none's / the variant's: the TPS ratio a CPU-bound machine would show, undisturbed by other processes on the machine.\n\n")
	}
	if len(r.Apply) > 0 {
		b.WriteString("### Apply rate — catching up a backlog built with the applier stopped\n\n")
		b.WriteString("| backlog | replicator | seconds | row changes/s | transactions/s | ratio to native | CPU µs per row change |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, kind := range applyKinds() {
			mm := r.Apply[kind]
			if mm == nil {
				continue
			}
			var desc string
			for _, rep := range []string{"pgreplica", "native", "slony"} {
				a := mm[rep]
				if a == nil {
					continue
				}
				base, d := splitVariant(kind)
				if base == kindTPCB {
					desc = fmt.Sprintf("TPC-B, %s txns (%s row changes)", thousands(a.Txns), thousands(a.Changes))
				} else {
					desc = fmt.Sprintf("inserts, %s rows in %s txns", thousands(a.Changes), thousands(a.Txns))
				}
				desc += durabilitySuffix(d)
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.2f | %s |\n", desc, replicatorName(rep),
					mmm(a.Seconds, sec), mmm(a.ChangesPerSec, num), mmm(a.TxnsPerSec, num), a.RatioToNative, mmm(a.CPUus, sec))
			}
		}
		b.WriteString("\n")
	}
	if len(r.Lag) > 0 {
		fmt.Fprintf(&b, "### Lag — commit on the origin to arrival on the replica, pgbench TPC-B at %d TPS for %d s\n\n", m.LagTPS, m.LagSeconds)
		b.WriteString("| replicator | p50 ms | p95 ms | p99 ms | max ms | probes (lost) |\n|---|---:|---:|---:|---:|---:|\n")
		reps := []string{"pgreplica", "native", "slony"}
		for rep := range r.Lag {
			if strings.HasPrefix(rep, "pgreplica [") {
				reps = append(reps, rep)
			}
		}
		sort.Strings(reps[3:])
		for _, rep := range reps {
			l := r.Lag[rep]
			if l == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s (%d) |\n", replicatorName(rep), mmm(l.P50, ms), mmm(l.P95, ms),
				mmm(l.P99, ms), mmm(l.Max, ms), thousands(l.Probes), l.Lost)
		}
		b.WriteString("\n")
	}
	names := make([]string, 0, len(r.OldTxn))
	for n := range r.OldTxn {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		o := r.OldTxn[name]
		of := ""
		if name != "" {
			of = " [" + name + "]"
		}
		fmt.Fprintf(&b, "### Old open transaction%s — CPU seconds of pgreplica's reading session on the origin per %s, pgbench TPC-B at %d TPS\n\n",
			of, time.Duration(m.OldTxnInterval*float64(time.Second)), m.OldTxnTPS)
		b.WriteString("| interval | no open transaction | a writing transaction open since the start | ratio |\n|---:|---:|---:|---:|\n")
		for i := 0; i < len(o.Without) || i < len(o.With); i++ {
			var wo, w Stat
			if i < len(o.Without) {
				wo = o.Without[i]
			}
			if i < len(o.With) {
				w = o.With[i]
			}
			ratio := 0.0
			if wo.Median > 0 {
				ratio = w.Median / wo.Median
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %.2f |\n", i+1, mmm(wo, sec), mmm(w, sec), ratio)
		}
		fmt.Fprintf(&b, "\nIn all: %.2f× with the transaction open; its last minute %.2f× its first.\n\n", o.Ratio, o.Growth)
	}
	if mm := r.MultiMaster; mm != nil {
		plain, with := Stat{Runs: mm.PlainTPS}, Stat{Runs: mm.MultiMasterTPS}
		plain.finish()
		with.finish()
		b.WriteString("### Multi-master node — pgbench TPC-B on node a of a 2-node set\n\n| variant | TPS |\n|---|---:|\n")
		capt := Stat{Runs: mm.CaptureTPS}
		capt.finish()
		fmt.Fprintf(&b, "| no capture | %s |\n| capture with row versions alone | %s |\n| capture with row versions, the engine applying a's changes to node b | %s |\n",
			mmm(plain, num), mmm(capt, num), mmm(with, num))
		fmt.Fprintf(&b, "\nOrigin TPS ratio of the multi-master node: %.2f; by CPU per transaction: %.2f (capture alone: %.2f).\n\n", mm.Ratio, mm.CPURatio, mm.CaptureCPURatio)
	}
	if f := r.Footprint; f != nil {
		b.WriteString("### Footprint — pgreplica replicate --once on the insert backlog\n\n")
		b.WriteString("| figure | value |\n|---|---:|\n")
		fmt.Fprintf(&b, "| peak RSS, %s events (MB) | %s |\n", thousands(f.Events), mmm(f.PeakRSSKB, mb))
		if f.SmallPeakRSSKB.Median > 0 {
			fmt.Fprintf(&b, "| peak RSS, %s events (MB) | %s |\n", thousands(f.SmallEvents), mmm(f.SmallPeakRSSKB, mb))
		}
		fmt.Fprintf(&b, "| CPU seconds (user+sys), %s events | %s |\n", thousands(f.Events), mmm(f.CPUSeconds, sec))
		fmt.Fprintf(&b, "| event log on the origin, bytes per event | %s |\n", mmm(f.LogBytesPerEvent, num))
		if a := r.Apply[kindTPCB]["pgreplica"]; a != nil && a.LogBytesPerEv != nil && a.LogBytesPerEv.Median > 0 {
			fmt.Fprintf(&b, "| event log bytes per event, TPC-B backlog | %s |\n", mmm(*a.LogBytesPerEv, num))
			fmt.Fprintf(&b, "| peak RSS, TPC-B backlog of %s events (MB) | %s |\n", thousands(a.Events), mmm(*a.PeakRSSKB, mb))
		}
		b.WriteString("\n")
	}
	if len(r.Targets) > 0 {
		b.WriteString("### Targets (issues 6 and 12)\n\n| target | measured | |\n|---|---|---|\n")
		for _, t := range r.Targets {
			mark := "**missed**"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Target, t.Measured, mark)
		}
		b.WriteString("\n")
	}
	if len(r.Samples) > 0 {
		busy, max, waited := 0, 0.0, 0.0
		for _, s := range r.Samples {
			if s.BusyBefore > 0.25 {
				busy++
			}
			if s.BusyBefore > max {
				max = s.BusyBefore
			}
			waited += s.WaitedSec
		}
		fmt.Fprintf(&b, "Machine noise: %d of %d samples started with other processes keeping more than 25%% of the CPUs busy (worst %.0f%%); %.0f s spent waiting for quiet (per-sample figures in the JSON).\n\n",
			busy, len(r.Samples), max*100, waited)
	}
	b.WriteString("Notes:\n")
	for _, n := range m.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}
