package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"pgreplica/core/pgtest"
)

// The origin is stopped with -m immediate under load while r2 stands
// ahead of r1 (the daemon fed only r2 for a while). failover --to r1 makes
// r1 the origin; r2 ends equal to it (verify --repair on the difference);
// writes work on r1 only, with the sequence default; and once the old
// origin runs again, --report-lost lists exactly the events r1 had not
// applied, as its log shows them.
func TestFailoverOriginLostMidLoad(t *testing.T) {
	ctx := context.Background()
	lost, err := pgtest.Start(ctx, "lost", pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(lost.Stop)
	db, err := lost.CreateDB(ctx, "origin")
	if err != nil {
		t.Fatal(err)
	}
	p := shared.Get(t)
	_, r1 := p.DBs(t)
	db2, err := p.Replica.CreateDB(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	s := &set3{origin: lost.DSN(db), r1: r1, r2: p.Replica.DSN(db2)}
	for _, d := range []string{s.origin, s.r1, s.r2} {
		execSQL(t, d, ledgerSchema)
	}
	body := "name: shop\norigin:\n  dsn: %q\nreplicas:\n%spoll_interval: 100ms\n"
	entry := func(name, dsn string) string {
		return fmt.Sprintf("  - name: %s\n    dsn: %q\n    protect: true\n", name, dsn)
	}
	s.cfg = writeConfig(t, fmt.Sprintf(body, s.origin, entry("r1", s.r1)+entry("r2", s.r2)))
	onlyR2 := writeConfig(t, fmt.Sprintf(body, s.origin, entry("r2", s.r2)))
	if _, errOut, code := cli(t, "", "-c", s.cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	wait := ledgerLoad(loadCtx, []string{s.origin}, 3)
	d := startDaemon(t, s.cfg)
	eventually(t, 10*time.Second, "rows on r1", func() bool { return count(t, s.r1, "SELECT count(*) FROM ledger") > 20 })
	stopDaemon(t, d)
	d = startDaemon(t, onlyR2) // r2 goes on, r1 stays behind
	eventually(t, 10*time.Second, "r2 ahead", func() bool {
		return count(t, s.r2, "SELECT count(*) FROM ledger") > count(t, s.r1, "SELECT count(*) FROM ledger")+50
	})
	// While the origin answers, failover is refused: switchover loses nothing.
	if _, errOut, code := cli(t, "", "-c", s.cfg, "failover", "--to", "r1", "--yes"); code != 1 || !strings.Contains(errOut, "answers: use pgreplica switchover --to r1, which loses nothing") {
		t.Fatalf("failover with the origin up: %d %q", code, errOut)
	}
	if err := lost.StopServer(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	stopDaemon(t, d)
	stopLoad()
	wait()
	onR1, onR2 := count(t, s.r1, "SELECT count(*) FROM ledger"), count(t, s.r2, "SELECT count(*) FROM ledger")
	t.Logf("at the loss: r1 has %d ledger rows, r2 %d", onR1, onR2)

	if _, errOut, code := cli(t, "", "-c", s.cfg, "failover", "--to", "nope", "--yes"); code != 1 || !strings.Contains(errOut, "Error: failover --to nope: the set shop has no replica nope (its replicas: r1, r2)") {
		t.Fatalf("failover to nope: %d %q", code, errOut)
	}
	// Killed after its promote step, it is finished by running it again.
	cmd := exec.Command(binary(t), "-c", s.cfg, "failover", "--to", "r1", "--yes")
	cmd.Env = append(os.Environ(), testDieAfterStep+"=failover.promoted")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "step 2/5 promote: r1 is the origin of set shop") {
		t.Fatalf("failover was not killed after promote: %v\n%s", err, out)
	}
	start := time.Now()
	out, errOut, code := cli(t, "", "-c", s.cfg, "failover", "--to", "r1", "--yes")
	if code != 0 {
		t.Fatalf("failover: %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("failover took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	repaired := fmt.Sprintf("step 3/5 repoint: replica r2 follows r1; repaired %d deleted, 0 inserted,", 2*(onR2-onR1)) // ledger and history rows
	if !strings.Contains(out, repaired) || !strings.Contains(out, "verify: replica r2: equal") {
		t.Fatalf("failover output lacks %q:\n%s", repaired, out)
	}
	kept := ledgerIDs(t, s.r1)
	if ledgerIDs(t, s.r2) != kept {
		t.Fatal("r2 differs from the new origin")
	}
	execSQL(t, s.r1, "INSERT INTO ledger (id, client) VALUES ('after', 9); INSERT INTO history (account, delta) VALUES (1, 1)")
	if err := execErr(s.r2, "INSERT INTO ledger (id, client) VALUES ('stray', 0)"); err == nil || !strings.Contains(err.Error(), "is a replica (set shop, origin ") {
		t.Fatalf("a write on r2: %v", err)
	}
	if _, errOut, code := cli(t, "", "-c", s.cfg, "replicate", "--once"); code != 0 {
		t.Fatal(errOut)
	}
	if out, errOut, code := cli(t, "", "-c", s.cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(string(mustRead(t, s.cfg)), s.origin) {
		t.Fatal("the rewritten config still names the old origin")
	}

	// The old origin comes back: its log has what r1 had not applied.
	if err := lost.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = cli(t, "", "-c", s.cfg, "failover", "--report-lost", "--from", s.origin, "--json")
	if code != 0 {
		t.Fatalf("report-lost: %d %s", code, errOut)
	}
	var rep struct {
		Events []struct {
			ID    int64          `json:"id"`
			TxID  string         `json:"txid"`
			Table string         `json:"table"`
			Op    string         `json:"op"`
			Data  map[string]any `json:"data"`
			Key   map[string]any `json:"key"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report-lost --json: %v\n%s", err, out)
	}
	// What r1 lacks of the old origin's ledger, from the old origin itself.
	var want []string
	keptSet := map[string]bool{}
	for _, id := range strings.Split(kept, ",") {
		keptSet[id] = true
	}
	for _, id := range strings.Split(ledgerIDs(t, s.origin), ",") {
		if !keptSet[id] {
			want = append(want, id)
		}
	}
	var got []string
	lostTx := map[string]bool{}
	for _, e := range rep.Events {
		if e.Table == "public.ledger" && e.Op == "I" {
			got = append(got, fmt.Sprint(e.Data["id"]))
			lostTx[e.TxID] = true
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) == 0 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("report-lost lists ledger rows %v, want %v", got, want)
	}
	// Every other event reported is of one of those transactions (or a
	// sequence sample), and every event of those transactions is reported.
	n := 0
	for _, e := range rep.Events {
		if e.Op != "Q" && !lostTx[e.TxID] {
			t.Fatalf("event %d (txid %s, %s) reported as lost, but its transaction reached r1", e.ID, e.TxID, e.Table)
		}
		if e.Op != "Q" {
			n++
		}
	}
	var txs []string
	for tx := range lostTx {
		txs = append(txs, tx)
	}
	if all := count(t, s.origin, "SELECT count(*) FROM pgreplica.log WHERE txid::text = ANY ('{"+strings.Join(txs, ",")+"}')"); all != int64(n) {
		t.Fatalf("the lost transactions have %d events in the old origin's log, %d reported", all, n)
	}
	t.Logf("%d events of %d transactions reported lost", n, len(lostTx))
	out, _, code = cli(t, "", "-c", s.cfg, "failover", "--report-lost", "--from", s.origin)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("set shop: %d events of the old origin ", len(rep.Events))) {
		t.Fatalf("report-lost: %d\n%s", code, out)
	}
}
