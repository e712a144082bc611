package bundle

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkBundleMillion exports one bundle of a million events (set
// PGREPLICA_BENCH_EVENTS for another count) and imports it, and reports the
// bundle's size against the log's and the export and import rates. It is
// not part of the normal test run:
//
//	go test -run '^$' -bench BundleMillion -benchtime 1x ./core/bundle/
func BenchmarkBundleMillion(b *testing.B) {
	events := 1_000_000
	if s := os.Getenv("PGREPLICA_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("PGREPLICA_BENCH_EVENTS=%q: want a positive number", s)
		}
		events = n
	}
	for range b.N {
		b.StopTimer()
		e := newEnv(b)
		base := e.export(ExportOptions{Base: true})
		// Half inserts, half updates of those rows, in transactions of
		// 50,000 events: the shape of a day of an order table.
		half := events / 2
		for done := 0; done < half; done += 25000 {
			n := min(25000, half-done)
			exec(e.t, e.origin, `INSERT INTO history (account, delta, amount, doc)
			                     SELECT g % 200 + 1, g, g / 7.0, jsonb_build_object('g', g, 'note', 'order ' || g)
			                       FROM generate_series($1::int + 1, $1::int + $2::int) g`, done, n)
			exec(e.t, e.origin, `UPDATE history SET delta = delta + 1, amount = amount * 2
			                      WHERE id > (SELECT max(id) FROM history) - $1::int`, n)
		}
		logBytes := queryInt(e.t, e.origin, `SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['pgreplica.log_0', 'pgreplica.log_1', 'pgreplica.log_2']::regclass[]) c`)
		logEvents := queryInt(e.t, e.origin, `SELECT count(*) FROM pgreplica.log`)
		b.StartTimer()

		start := time.Now()
		ws := e.export(ExportOptions{MaxBytes: 1 << 40})
		exportTook := time.Since(start)
		if len(ws) != 1 || ws[0].Header.Events != logEvents {
			b.Fatalf("export wrote %d bundles; log has %d events", len(ws), logEvents)
		}
		e.importFiles(ImportOptions{}, base...)
		start = time.Now()
		e.importFiles(ImportOptions{}, ws...)
		importTook := time.Since(start)

		b.StopTimer()
		e.requireEqual()
		w := ws[0]
		b.ReportMetric(float64(w.Header.Events), "events")
		b.ReportMetric(float64(w.Bytes)/(1<<20), "bundle_MiB")
		b.ReportMetric(float64(w.Raw)/(1<<20), "raw_MiB")
		b.ReportMetric(float64(logBytes)/(1<<20), "log_MiB")
		b.ReportMetric(float64(w.Bytes)/float64(logBytes), "bundle/log")
		b.ReportMetric(float64(w.Header.Events)/exportTook.Seconds(), "export_events/s")
		b.ReportMetric(float64(w.Header.Events)/importTook.Seconds(), "import_events/s")
		b.ReportMetric(exportTook.Seconds(), "export_s")
		b.ReportMetric(importTook.Seconds(), "import_s")
	}
}
