package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"pgreplica/core/alert"
	"pgreplica/core/alert/alerttest"
)

// A duplicate key stops the replica: why --json names the event, its key
// and the server's error, without changing anything; after the operator
// removed the row, retry makes the daemon apply at once.
func TestWhyNamesTheFailingEventAndRetryAppliesIt(t *testing.T) {
	cfg, origin, replica := dbs(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	execSQL(t, replica, "INSERT INTO t VALUES (2, 'only on the replica')")
	execSQL(t, origin, "INSERT INTO t VALUES (1, 'a')")
	execSQL(t, origin, "INSERT INTO t VALUES (2, 'b')")
	execSQL(t, origin, "INSERT INTO t VALUES (3, 'c'); INSERT INTO t VALUES (4, 'd')")
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate"); code != 1 || !strings.Contains(errOut, "duplicate key") {
		t.Fatalf("replicate: exit %d, %s", code, errOut)
	}
	event := count(t, origin, "SELECT id FROM pgreplica.log WHERE data->>'id' = '2'")

	out, errOut, code := cli(t, "", "-c", cfg, "why", "--replica", "r1", "--json")
	if code != 0 {
		t.Fatalf("why: exit %d: %s", code, errOut)
	}
	var got whyJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.Replicas) != 1 {
		t.Fatalf("why: %s", out)
	}
	r := got.Replicas[0]
	f := r.Failing
	if r.Healthy || r.Pending != 4 || f == nil || f.ID != event || f.Table != "public.t" || f.Op != "INSERT" ||
		compactJSON(f.Key) != `{"id":2}` || f.SQLState != "23505" || !strings.Contains(f.Error, "duplicate key value violates unique constraint") ||
		f.Detail != "Key (id)=(2) already exists." || f.Behind != 2 || r.Tried != 1 ||
		!strings.HasPrefix(f.Statement, `INSERT INTO "public"."t"`) ||
		!strings.HasPrefix(f.Hint, `the replica has a row the origin had not: delete it on the replica (public.t, key {"id": 2})`) {
		t.Fatalf("why --json:\n%s", out)
	}
	if compactJSON(f.Data) != `{"v":"b","id":2}` {
		t.Errorf("data %s", f.Data)
	}
	// Nothing was changed by why (its transaction was rolled back).
	if n := count(t, replica, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("replica has %d rows after why", n)
	}
	text, _, _ := cli(t, "", "-c", cfg, "why")
	for _, want := range []string{
		"replica r1: BEHIND",
		fmt.Sprintf("  failing:   event %d (txid ", event),
		`  key:       {"id": 2}`,
		`  server:    duplicate key value violates unique constraint "t_pkey" (Key (id)=(2) already exists) [SQLSTATE 23505]`,
		"  behind it: 2 events",
		"  pending:   public.t 4",
		"Try: the replica has a row the origin had not",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("why lacks %q:\n%s", want, text)
		}
	}

	// With the daemon: stopped; fix the row, retry, applied at once.
	// It alerts too: the stop, with the failing event, and its end.
	hook := alerttest.NewWebhook()
	defer hook.Close()
	sock := t.TempDir() + "/c.sock"
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("control:\n  socket: "+sock+"\nalerts:\n  webhooks: [{url: "+hook.URL+"}]\n")...), 0o600)
	d := startDaemon(t, cfg)
	started := time.Now()
	eventually(t, 10*time.Second, "why says stopped", func() bool {
		out, _, _ := cli(t, "", "-c", cfg, "why", "--json")
		return strings.Contains(out, `"state": "stopped"`) && strings.Contains(out, `"stuck_since"`)
	})
	// The stopped worker's backoff doubles from 500ms: its tries come
	// about 0.5, 1.5, 3.5 and 7.5s after the start. Fixed at 4s, the
	// retry applies at once, not at 7.5s.
	time.Sleep(time.Until(started.Add(4 * time.Second)))
	execSQL(t, replica, "DELETE FROM t WHERE id = 2")
	asked := time.Now()
	if out, errOut, code := cli(t, "", "-c", cfg, "retry", "--replica", "r1"); code != 0 || out != "replica r1: retry asked; see pgreplica status\n" {
		t.Fatalf("retry: exit %d, %q %q", code, out, errOut)
	}
	eventually(t, time.Second, "the rows after retry", func() bool { return count(t, replica, "SELECT count(*) FROM t") == 4 })
	t.Logf("applied %v after retry", time.Since(asked).Round(time.Millisecond))
	if !d.hasLog(t, "retrying now, as asked") {
		t.Errorf("no 'retrying now, as asked' in the daemon's log: %v", d.logLines(t))
	}
	eventually(t, 5*time.Second, "stopped and resolved alerts", func() bool {
		return countHooks(sentHooks(t, hook, ""), alert.Stopped, alert.Resolved) == 1
	})
	hooks := sentHooks(t, hook, "")
	if countHooks(hooks, alert.Stopped, alert.Firing) != 1 {
		t.Fatalf("webhooks: %+v", hooks)
	}
	for _, m := range hooks {
		if m.Kind == alert.Stopped && m.Status == alert.Firing {
			for _, want := range []string{"duplicate key value violates unique constraint", fmt.Sprintf("failing event: %d (txid ", event),
				`key:           {"id": 2}`, "behind it:     2 events", "hint:          the replica has a row the origin had not"} {
				if !strings.Contains(m.Detail, want) {
					t.Errorf("stopped alert lacks %q:\n%s", want, m.Detail)
				}
			}
		}
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "retry", "--replica", "nope"); code != 2 || !strings.Contains(errOut, `--replica: unknown replica "nope" (known: r1)`) {
		t.Fatalf("retry nope: exit %d, %s", code, errOut)
	}
}

// A hanging SMTP server holds no change back: rows arrive within a
// second while the engine-started mail hangs.
func TestDaemonReplicatesWhileTheSMTPServerHangs(t *testing.T) {
	cfg, origin, replica := dbs(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	hang, err := alerttest.NewSMTP(alerttest.Hang)
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	hook := alerttest.NewWebhook()
	defer hook.Close()
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte(fmt.Sprintf(`poll_interval: 200ms
alerts:
  email: {smtp: %q, from: p@example.com, to: [d@example.com]}
  webhooks: [{url: %q}]
  grace: 1s
  group: 1s
`, hang.Addr, hook.URL))...), 0o600)
	startDaemon(t, cfg)
	for i := 1; i <= 5; i++ {
		start := time.Now()
		execSQL(t, origin, fmt.Sprintf("INSERT INTO t VALUES (%d, 'x')", i))
		eventually(t, 2*time.Second, "row on the replica", func() bool {
			return count(t, replica, "SELECT count(*) FROM t") == int64(i)
		})
		if took := time.Since(start); took > time.Second {
			t.Fatalf("row %d took %v", i, took)
		}
	}
	// Conflicts are grouped: one message for the three of one statement.
	execSQL(t, replica, "DELETE FROM t WHERE id <= 3")
	execSQL(t, origin, "UPDATE t SET v = 'y'")
	eventually(t, 5*time.Second, "a conflicts message", func() bool {
		return countHooks(sentHooks(t, hook, ""), alert.Conflicts, alert.Info) == 1
	})
	time.Sleep(1500 * time.Millisecond) // a second group would come within a second
	var got []alert.Message
	for _, m := range sentHooks(t, hook, "") {
		if m.Kind == alert.Conflicts {
			got = append(got, m)
		}
	}
	if len(got) != 1 || got[0].Summary != "replica r1: 3 new conflict(s)" || strings.Count(got[0].Detail, ": UPDATE public.t key ") != 3 ||
		!strings.Contains(got[0].Detail, `key {"id": 1}: update: no row`) {
		t.Fatalf("conflict messages: %+v", got)
	}
}

func compactJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return err.Error()
	}
	return out.String()
}

// metrics.listen already in use: run exits 1 at once, naming the address.
func TestRunRefusesAMetricsAddressInUse(t *testing.T) {
	cfg, _, _ := dbs(t, "CREATE TABLE t (id int PRIMARY KEY)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("metrics:\n  listen: "+l.Addr().String()+"\n")...), 0o600)
	_, errOut, code := cli(t, "", "-c", cfg, "run")
	if want := "Error: metrics.listen " + l.Addr().String() + ": bind: address already in use\n"; code != 1 || errOut != want {
		t.Fatalf("run: exit %d, %q, want %q", code, errOut, want)
	}
}

// alerts test: one message per channel, a line each, exit 1 when one fails.
func TestAlertsTestSendsOneMessagePerChannel(t *testing.T) {
	refuse, err := alerttest.NewSMTP(alerttest.Refuse)
	if err != nil {
		t.Fatal(err)
	}
	defer refuse.Close()
	hook := alerttest.NewWebhook()
	defer hook.Close()
	cfg := writeConfig(t, fmt.Sprintf(`name: shop
origin: {dsn: "host=127.0.0.1 port=1 dbname=x"}
alerts:
  email: {smtp: %q, tls: none, from: p@example.com, to: [d@example.com]}
  webhooks: [{url: %q}]
`, refuse.Addr, hook.URL))
	out, errOut, code := cli(t, "", "-c", cfg, "alerts", "test")
	if code != 1 || errOut != "Error: 1 of 2 alert channels failed\n" ||
		!strings.HasPrefix(out, "✘ email "+refuse.Addr+": ") || !strings.Contains(out, "no mail accepted here") ||
		!strings.HasSuffix(out, "✔ webhook "+hook.URL+": test message sent\n") {
		t.Fatalf("alerts test: exit %d\n%s%s", code, out, errOut)
	}
	hooks := sentHooks(t, hook, "")
	if len(hooks) != 1 || hooks[0].Kind != alert.Test || hooks[0].Set != "shop" {
		t.Fatalf("hooks %+v", hooks)
	}
	if _, errOut, code := cli(t, "", "--origin", "dbname=x", "alerts", "test"); code != 2 || !strings.Contains(errOut, "no alert channel configured") {
		t.Fatalf("no channels: exit %d %s", code, errOut)
	}
}
