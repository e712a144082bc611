package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rowsText is the rows of a query as text, in order.
func rowsText(t *testing.T, dsn, sql string) []string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT x::text FROM ("+sql+") x")
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// customerLoad moves customers between regions, changes balances, inserts
// and deletes, until ctx ends.
func customerLoad(ctx context.Context, dsn string, workers int) func() int64 {
	var n atomic.Int64
	var next atomic.Int64
	next.Store(1000)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return
			}
			defer conn.Close(context.Background())
			regions := []string{"eu", "us", "asia"}
			for ctx.Err() == nil {
				a, b := rand.IntN(200)+1, rand.IntN(200)+1
				sql := fmt.Sprintf(`BEGIN;
UPDATE customers SET region = '%s', balance = balance + %d WHERE id = %d;
UPDATE customers SET balance = balance - 1, ssn = 'secret-x%d' WHERE id = %d;
INSERT INTO customers VALUES (%d, '%s', 0, 'secret-%d');
DELETE FROM customers WHERE id = (SELECT min(id) FROM customers WHERE id >= 1000);
COMMIT`, regions[rand.IntN(3)], rand.IntN(100), a, b, b, next.Add(1), regions[rand.IntN(3)], a)
				if _, err := conn.Exec(ctx, sql); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	return func() int64 { wg.Wait(); return n.Load() }
}

// Two replicas of one table under different rules (filters, an excluded
// column, a rename), under load with the daemon killed twice: each equals
// its own projection of the origin, verify says equal, a planted
// difference is found and repaired, and the excluded column's values never
// reach the log.
func TestRulesTwoReplicasUnderLoadWithKills(t *testing.T) {
	p := shared.Get(t)
	origin, r1 := p.DBs(t)
	_, r2 := p.DBs(t)
	execSQL(t, origin, `CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, balance bigint NOT NULL, ssn text);
INSERT INTO customers SELECT g, (ARRAY['eu','us','asia'])[1 + g % 3], 0, 'secret-' || g FROM generate_series(1, 200) g`)
	execSQL(t, r1, `CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, balance bigint NOT NULL)`)
	execSQL(t, r2, `CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, amount bigint NOT NULL)`)
	cfg := writeConfig(t, fmt.Sprintf(`name: shop
origin:
  dsn: %q
replicas:
  - name: eu
    dsn: %q
    tables:
      - table: public.customers
        where: "region = 'eu'"
        columns: {exclude: [ssn]}
  - name: rest
    dsn: %q
    tables:
      - table: public.customers
        where: "region <> 'eu'"
        columns: {include: [region, balance]}
        rename: {balance: amount}
batch:
  max_events: 50
poll_interval: 100ms
`, origin, r1, r2))
	if out, errOut, code := cli(t, "", "-c", cfg, "sync", "--yes"); code != 0 {
		t.Fatalf("sync: %d\n%s\n%s", code, out, errOut)
	}
	euSQL := "SELECT id, region, balance FROM customers WHERE region = 'eu' ORDER BY id"
	restSQL := "SELECT id, region, balance FROM customers WHERE region <> 'eu' ORDER BY id"
	same := func(step string) {
		t.Helper()
		if got, want := rowsText(t, r1, "SELECT id, region, balance FROM customers ORDER BY id"), rowsText(t, origin, euSQL); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: replica eu has %d rows, its projection %d:\n%v\n%v", step, len(got), len(want), got, want)
		}
		if got, want := rowsText(t, r2, "SELECT id, region, amount FROM customers ORDER BY id"), rowsText(t, origin, restSQL); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: replica rest has %d rows, its projection %d:\n%v\n%v", step, len(got), len(want), got, want)
		}
	}
	same("after sync")

	ctx, stop := context.WithCancel(context.Background())
	wait := customerLoad(ctx, origin, 3)
	for i := 0; i < 2; i++ {
		d := startDaemon(t, cfg)
		time.Sleep(time.Duration(600+rand.IntN(600)) * time.Millisecond)
		d.cmd.Process.Kill()
		<-d.done
	}
	stop()
	if n := wait(); n < 50 {
		t.Fatalf("only %d transactions under load", n)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate --once: %d %s", code, errOut)
	}
	same("after the kills")
	if n := count(t, origin, "SELECT count(*) FROM pgreplica.log WHERE concat(key::text, data::text) LIKE '%secret%'"); n != 0 {
		t.Fatalf("%d events in pgreplica.log carry the excluded ssn", n)
	}
	if n := count(t, origin, "SELECT count(*) FROM pgreplica.log WHERE route IS NOT NULL"); n < 50 {
		t.Fatalf("only %d routed events in the log", n)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}

	execSQL(t, r2, "UPDATE customers SET amount = amount + 1000 WHERE id = (SELECT min(id) FROM customers)")
	out, _, code := cli(t, "", "-c", cfg, "verify", "--replica", "rest", "--json")
	var res struct {
		Equal    bool `json:"equal"`
		Replicas []struct {
			Tables []struct {
				Different int64 `json:"different_count"`
			} `json:"tables"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 3 || res.Equal || len(res.Replicas) != 1 || res.Replicas[0].Tables[0].Different != 1 {
		t.Fatalf("verify of the planted difference: %d %v\n%s", code, err, out)
	}
	if out, errOut, code := cli(t, "", "-c", cfg, "verify", "--repair", "--yes"); code != 0 {
		t.Fatalf("verify --repair: %d\n%s\n%s", code, out, errOut)
	}
	same("after the repair")

	// tables --json shows each replica's rule; nothing needs a re-copy.
	out, errOut, code := cli(t, "", "-c", cfg, "tables", "--json")
	if code != 0 {
		t.Fatalf("tables --json: %d %s", code, errOut)
	}
	var tables []tableJSON
	if err := json.Unmarshal([]byte(out), &tables); err != nil || len(tables) != 1 {
		t.Fatalf("tables --json: %v\n%s", err, out)
	}
	eu, rest := tables[0].Rules["eu"], tables[0].Rules["rest"]
	if eu.Where != "region = 'eu'" || !reflect.DeepEqual(eu.Exclude, []string{"ssn"}) || eu.NeedsRecopy ||
		rest.Rename["balance"] != "amount" || rest.NeedsRecopy || rest.Hash == "" || rest.Hash != rest.Copied {
		t.Fatalf("tables --json rules: %+v", tables[0].Rules)
	}

	// A changed filter: install says so, tables and status say the table
	// needs a re-copy, sync --table copies it again.
	text := strings.Replace(string(mustRead(t, cfg)), `where: "region = 'eu'"`, `where: "region IN ('eu', 'asia')"`, 1)
	os.WriteFile(cfg, []byte(text), 0o600)
	if out, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 || !strings.Contains(out, "replica eu: public.customers: rule changed: the replica needs a new copy under it: pgreplica sync --replica eu --table public.customers") {
		t.Fatalf("install after the change: %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = cli(t, "", "-c", cfg, "tables")
	if !strings.Contains(out, "replica eu: public.customers: where region IN ('eu', 'asia'); without ssn · needs re-copy under its rule: pgreplica sync --replica eu --table public.customers") {
		t.Fatalf("tables does not say the table needs a re-copy:\n%s", out)
	}
	out, _, _ = cli(t, "", "-c", cfg, "status")
	if !strings.Contains(out, "replica eu: public.customers: needs re-copy under its rule") {
		t.Fatalf("status does not say the table needs a re-copy:\n%s", out)
	}
	// ... while the daemon replicates under load.
	d := startDaemon(t, cfg)
	ctx, stop = context.WithCancel(context.Background())
	wait = customerLoad(ctx, origin, 2)
	time.Sleep(300 * time.Millisecond)
	if out, errOut, code := cli(t, "", "-c", cfg, "sync", "--replica", "eu", "--table", "public.customers", "--yes"); code != 0 {
		t.Fatalf("sync --table: %d\n%s\n%s", code, out, errOut)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wait()
	execSQL(t, origin, "UPDATE customers SET region = 'asia' WHERE id % 5 = 0")
	time.Sleep(300 * time.Millisecond)
	d.cmd.Process.Kill()
	<-d.done
	euSQL = "SELECT id, region, balance FROM customers WHERE region IN ('eu', 'asia') ORDER BY id"
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate --once: %d %s", code, errOut)
	}
	same("under the new filter")
}
