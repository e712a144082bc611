package metrics

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"pgreplica/core/config"
	"pgreplica/core/replay"
)

type fakeEngine struct{ st []replay.ReplicaStatus }

func (f *fakeEngine) Status() []replay.ReplicaStatus { return f.st }

// Without a reachable origin the endpoint still serves the engine's view:
// state, heartbeat lag, origin_up 0; /readyz names each replica that is
// not ready; the DSN's password is nowhere.
func TestEndpointWithoutDatabases(t *testing.T) {
	cfg, err := config.FromFlags("shop", "host=127.0.0.1 port=1 dbname=x user=u password=hunter2secret connect_timeout=1",
		[]string{"host=127.0.0.1 port=2 dbname=y password=hunter2secret", "host=127.0.0.1 port=3 dbname=z"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Alerts.LagOver = 30 * time.Second
	now := time.Now()
	eng := &fakeEngine{st: []replay.ReplicaStatus{
		{Name: "replica", State: replay.Streaming, CaughtUpAt: now.Add(-time.Second)},
		{Name: "replica2", State: replay.Retrying, Err: "connect to replica replica2: connection refused", CaughtUpAt: now.Add(-time.Minute)},
	}}
	m := New(cfg, eng, slog.New(slog.DiscardHandler))
	m.OnEvent(replay.BatchApplied{Replica: "replica", Events: 7})
	m.OnEvent(replay.StateChanged{Replica: "replica2", From: replay.Streaming, To: replay.Retrying})
	m.OnEvent(replay.StateChanged{Replica: "replica2", From: replay.Retrying, To: replay.Stopped})
	m.OnEvent(replay.ConflictFound{Replica: "replica", Conflict: replay.Conflict{Kind: replay.DeleteNoRow}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) float64 {
		for _, mt := range fams[name].GetMetric() {
			ok := true
			for k, v := range labels {
				found := false
				for _, l := range mt.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				ok = ok && found
			}
			if ok {
				return mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			}
		}
		t.Fatalf("no %s %v in\n%s", name, labels, body)
		return 0
	}
	if v := value("pgreplica_origin_up", nil); v != 0 {
		t.Errorf("origin_up = %v", v)
	}
	if v := value("pgreplica_replica_lag_seconds", map[string]string{"replica": "replica2"}); v < 59 || v > 70 {
		t.Errorf("replica2 lag = %v", v)
	}
	if v := value("pgreplica_replica_state", map[string]string{"replica": "replica2", "state": "retrying"}); v != 1 {
		t.Errorf("replica2 retrying = %v", v)
	}
	if v := value("pgreplica_replica_applied_events_total", map[string]string{"replica": "replica"}); v != 7 {
		t.Errorf("applied = %v", v)
	}
	if v := value("pgreplica_replica_apply_errors_total", map[string]string{"replica": "replica2"}); v != 1 {
		t.Errorf("apply errors = %v (retrying then stopped is one fault)", v)
	}
	if v := value("pgreplica_replica_conflicts_total", map[string]string{"replica": "replica", "kind": "delete: no row"}); v != 1 {
		t.Errorf("conflicts = %v", v)
	}
	if strings.Contains(string(body), "hunter2secret") {
		t.Error("the password is in /metrics")
	}

	resp, err = http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "replica replica2: retrying: connect to replica replica2: connection refused\n"; resp.StatusCode != 503 || string(body) != want {
		t.Errorf("/readyz = %d %q, want 503 %q", resp.StatusCode, body, want)
	}
	eng.st[1] = replay.ReplicaStatus{Name: "replica2", State: replay.Catchup, CaughtUpAt: now.Add(-time.Minute)}
	if ok, why := m.Ready(cfg.Alerts.LagOver); ok || !strings.HasPrefix(why, "replica replica2: lag 1m0") || !strings.HasSuffix(why, " over 30s") {
		t.Errorf("Ready = %v %q", ok, why)
	}
	eng.st[1].CaughtUpAt = time.Now()
	if ok, why := m.Ready(cfg.Alerts.LagOver); !ok {
		t.Errorf("Ready = %v %q", ok, why)
	}
	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v", err)
	}
}
