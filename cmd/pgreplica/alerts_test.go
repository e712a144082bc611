package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"pgreplica/core/alert"
	"pgreplica/core/alert/alerttest"
	"pgreplica/core/pgtest"
)

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams, string(body)
}

// metric is the value of family name with the given labels (all of them
// must match); ok false when absent.
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sent is what one channel received, as "status kind" lines.
func sentMails(s *alerttest.SMTP) []string {
	var out []string
	for _, m := range s.Mails() {
		out = append(out, m.Subject())
	}
	return out
}

func sentHooks(t *testing.T, w *alerttest.Webhook, secret string) []alert.Message {
	t.Helper()
	var out []alert.Message
	for _, h := range w.Hooks() {
		if want := alert.Sign([]byte(secret), h.Body); secret != "" && h.Signature != want || secret == "" && h.Signature != "" {
			t.Fatalf("webhook signature %q, want %q", h.Signature, want)
		}
		var m alert.Message
		if err := json.Unmarshal(h.Body, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func countHooks(ms []alert.Message, k alert.Kind, st alert.Status) int {
	n := 0
	for _, m := range ms {
		if m.Kind == k && m.Status == st {
			n++
		}
	}
	return n
}

func countMails(subjects []string, part string) int {
	n := 0
	for _, s := range subjects {
		if strings.Contains(s, part) {
			n++
		}
	}
	return n
}

// The daemon with alerts (a real SMTP server and a real HTTP receiver)
// and metrics, on a pair of clusters of its own: a lock on the replica
// holds the apply while the origin writes (pending and lag rise, then
// fall); the replica cluster is stopped for longer than the grace period
// while the origin takes writes, then started again. Each channel gets
// exactly one "unreachable" and one "resolved" message, /readyz turns 503
// and back, the lag grows while the origin is idle, the webhook's
// signature verifies, and the SMTP password is in no log, status or metric.
func TestDaemonAlertsAndMetricsThroughAReplicaOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if os.Getenv("PGREPLICA_TEST_ORIGIN") != "" {
		t.Skip("stops the replica server: needs clusters of its own")
	}
	pair, err := pgtest.StartPair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Stop()
	originDSN, replicaDSN := pair.DBs(t)
	for _, d := range []string{originDSN, replicaDSN} {
		execSQL(t, d, "CREATE TABLE t (id serial PRIMARY KEY, v text)")
	}
	const smtpPassword = "smtp-pw-9f8e7d"
	t.Setenv("PGREPLICA_SMTP_PASSWORD", smtpPassword)
	mailSrv, err := alerttest.NewSMTP(alerttest.Accept)
	if err != nil {
		t.Fatal(err)
	}
	defer mailSrv.Close()
	mailSrv.Password = smtpPassword
	hook := alerttest.NewWebhook()
	defer hook.Close()
	dir := t.TempDir()
	secret := "webhook-secret"
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte(secret+"\n"), 0o600)
	maddr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`name: shop
origin: {dsn: %q}
replicas:
  - name: r1
    dsn: %q
poll_interval: 200ms
control: {socket: %q}
metrics: {listen: %q}
alerts:
  email:
    smtp: %q
    tls: none
    username: pgreplica
    from: pgreplica@example.com
    to: [dba@example.com]
  webhooks:
    - url: %q
      secret_file: %q
  lag_over: 2s
  repeat: 1h
  grace: 2s
  group: 1s
`, originDSN, replicaDSN, filepath.Join(dir, "c.sock"), maddr, mailSrv.Addr, hook.URL, filepath.Join(dir, "hook.secret")))
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	d := startDaemon(t, cfg)
	eventually(t, 10*time.Second, "engine started on both channels", func() bool {
		return countMails(sentMails(mailSrv), "INFO: engine started") == 1 && countHooks(sentHooks(t, hook, secret), alert.EngineStarted, alert.Info) == 1
	})
	eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := readyz(t, maddr); return code == 200 })
	if resp, err := http.Get("http://" + maddr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v", err)
	}

	// Load while a lock on the replica holds the apply: pending and lag
	// rise; released, they fall to 0 and about 0.
	rc, err := pgx.Connect(ctx, replicaDSN)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := rc.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		execSQL(t, originDSN, "INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 10)")
	}
	eventually(t, 10*time.Second, "pending 200 in /metrics", func() bool {
		fams, _ := scrape(t, maddr)
		p, _ := metric(fams, "pgreplica_replica_pending_events", "replica", "r1")
		return p == 200
	})
	time.Sleep(500 * time.Millisecond)
	fams, _ := scrape(t, maddr)
	lagHeld, _ := metric(fams, "pgreplica_replica_lag_seconds", "replica", "r1")
	if lagHeld < 0.5 {
		t.Fatalf("lag %v while the apply is held", lagHeld)
	}
	tx.Rollback(ctx)
	rc.Close(ctx)
	eventually(t, 10*time.Second, "pending 0 and lag < 1s after the lock", func() bool {
		fams, _ := scrape(t, maddr)
		p, _ := metric(fams, "pgreplica_replica_pending_events", "replica", "r1")
		l, _ := metric(fams, "pgreplica_replica_lag_seconds", "replica", "r1")
		a, _ := metric(fams, "pgreplica_replica_applied_events_total", "replica", "r1")
		return p == 0 && l < 1 && a == 200
	})
	fams, _ = scrape(t, maddr)
	if n, _ := metric(fams, "pgreplica_replica_applied_batches_total", "replica", "r1"); n < 1 {
		t.Fatalf("applied batches %v", n)
	}
	if v, ok := metric(fams, "pgreplica_table_capture", "table", "public.t", "status", "installed"); !ok || v != 1 {
		t.Fatal("no pgreplica_table_capture for public.t installed")
	}
	if v, _ := metric(fams, "pgreplica_origin_log_events"); v < 200 {
		t.Fatalf("origin log events %v", v)
	}
	if v, _ := metric(fams, "pgreplica_replica_state", "replica", "r1", "state", "streaming"); v != 1 {
		t.Fatal("r1 not streaming in pgreplica_replica_state")
	}

	// The outage: the origin takes writes, then is idle.
	if err := pair.Replica.StopServer(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for i := 0; i < 5; i++ {
		execSQL(t, originDSN, "INSERT INTO t (v) VALUES ('during the outage')")
	}
	eventually(t, 10*time.Second, "/readyz 503", func() bool {
		code, body := readyz(t, maddr)
		return code == 503 && strings.HasPrefix(body, "replica r1: retrying: ")
	})
	fams, _ = scrape(t, maddr)
	lag1, _ := metric(fams, "pgreplica_replica_lag_seconds", "replica", "r1")
	time.Sleep(time.Second)
	fams, _ = scrape(t, maddr)
	lag2, _ := metric(fams, "pgreplica_replica_lag_seconds", "replica", "r1")
	if !(lag1 > 0 && lag2 >= lag1+0.9) {
		t.Fatalf("lag while the replica is down and the origin idle: %v then %v", lag1, lag2)
	}
	// The databases say unreachable (the engine: retrying).
	if v, _ := metric(fams, "pgreplica_replica_state", "replica", "r1", "state", "unreachable"); v != 1 {
		t.Fatal("r1 not unreachable in pgreplica_replica_state")
	}
	eventually(t, 15*time.Second, "unreachable on both channels", func() bool {
		return countMails(sentMails(mailSrv), "FIRING: replica r1 unreachable") == 1 &&
			countHooks(sentHooks(t, hook, secret), alert.Unreachable, alert.Firing) == 1
	})
	if since := time.Since(down); since < 2*time.Second {
		t.Fatalf("unreachable alerted after %v, within the grace period", since)
	}
	time.Sleep(3 * time.Second) // the retries in between send nothing
	if err := pair.Replica.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "resolved on both channels", func() bool {
		return countMails(sentMails(mailSrv), "RESOLVED: replica r1 no longer unreachable") == 1 &&
			countHooks(sentHooks(t, hook, secret), alert.Unreachable, alert.Resolved) == 1
	})
	eventually(t, 10*time.Second, "/readyz 200 again", func() bool { code, _ := readyz(t, maddr); return code == 200 })
	if o, r := count(t, originDSN, "SELECT count(*) FROM t"), count(t, replicaDSN, "SELECT count(*) FROM t"); o != r || o != 205 {
		t.Fatalf("origin has %d rows, replica %d", o, r)
	}
	time.Sleep(2 * time.Second) // nothing more comes
	out, _, code := cli(t, "", "-c", cfg, "status", "--json")
	if code != 0 {
		t.Fatal("status failed")
	}
	_, metricsText := scrape(t, maddr)

	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
	mails, hooks := sentMails(mailSrv), sentHooks(t, hook, secret)
	wantMails := []string{
		"[pgreplica shop] INFO: engine started",
		"[pgreplica shop] FIRING: replica r1 unreachable for ",
		"[pgreplica shop] RESOLVED: replica r1 no longer unreachable",
		"[pgreplica shop] INFO: engine stopped",
	}
	if len(mails) != len(wantMails) {
		t.Fatalf("mails:\n%s\nwant:\n%s", strings.Join(mails, "\n"), strings.Join(wantMails, "\n"))
	}
	for i, w := range wantMails {
		if !strings.HasPrefix(mails[i], w) {
			t.Errorf("mail %d = %q, want %q…", i, mails[i], w)
		}
	}
	var kinds []string
	for _, m := range hooks {
		kinds = append(kinds, string(m.Status)+" "+string(m.Kind))
	}
	if got, want := strings.Join(kinds, ", "), "info engine_started, firing replica_unreachable, resolved replica_unreachable, info engine_stopped"; got != want {
		t.Fatalf("webhooks: %s\nwant %s", got, want)
	}
	if hooks[1].Replica != "r1" || !strings.Contains(hooks[1].Detail, "connect to replica r1") {
		t.Errorf("unreachable message %+v", hooks[1])
	}
	if mailSrv.Mails()[0].Username != "pgreplica" {
		t.Error("the mail was not authenticated")
	}
	logText, _ := os.ReadFile(d.logFile)
	for what, text := range map[string]string{"log": string(logText), "status --json": out, "metrics": metricsText} {
		if strings.Contains(text, smtpPassword) {
			t.Errorf("the SMTP password is in the %s", what)
		}
	}
}
