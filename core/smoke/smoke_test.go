package smoke

import (
	"context"
	"strings"
	"testing"
	"time"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pgtest"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

func installed(t *testing.T) *config.Config {
	t.Helper()
	pair := shared.Get(t)
	o, r := pair.DBs(t)
	cfg, err := config.FromFlags("smoke", o, []string{r})
	if err != nil {
		t.Fatal(err)
	}
	if err := capture.Install(context.Background(), cfg, func(string) {}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRunMeasuresEveryChangeOnEveryReplica(t *testing.T) {
	cfg := installed(t)
	ctx := context.Background()
	var seen []Step
	res, err := Run(ctx, cfg, Options{StartEngine: true, Timeout: 20 * time.Second}, func(s Step) { seen = append(seen, s) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Steps) != 3 || len(seen) != 3 {
		t.Fatalf("result %+v", res)
	}
	for i, op := range []string{"INSERT", "UPDATE", "DELETE"} {
		if res.Steps[i].Op != op || res.Steps[i].Took <= 0 {
			t.Errorf("step %d = %+v", i, res.Steps[i])
		}
	}
	if res.Cleanup != "" {
		t.Errorf("cleanup: %s", res.Cleanup)
	}
	// Nothing is left behind on either side.
	for _, dsn := range []string{cfg.Origin.DSN, cfg.Replicas[0].DSN} {
		if n := countTable(t, dsn); n != 0 {
			t.Errorf("%s still has %s", dsn, Table)
		}
	}
	// It can run again.
	if res, err := Run(ctx, cfg, Options{StartEngine: true}, nil, nil); err != nil || !res.OK() {
		t.Fatalf("second run: %v %+v", err, res)
	}
}

func TestRunWithoutEngineTimesOutWithDiagnosis(t *testing.T) {
	cfg := installed(t)
	res, err := Run(context.Background(), cfg, Options{Timeout: 300 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() {
		t.Fatal("passed without an engine")
	}
	if len(res.Steps) != 1 || !strings.Contains(res.Steps[0].Err, "not seen within") {
		t.Fatalf("steps %+v", res.Steps)
	}
	if !strings.Contains(res.Diagnosis, "no replay engine is running") {
		t.Errorf("diagnosis %q", res.Diagnosis)
	}
	if !strings.Contains(res.Cleanup, "left on the replicas") {
		t.Errorf("cleanup %q", res.Cleanup)
	}
}

func countTable(t *testing.T, dsn string) int {
	t.Helper()
	conn, err := pgxConnect(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relname = 'pgreplica_smoke'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
