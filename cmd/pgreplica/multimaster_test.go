package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest/faultproxy"
)

// nodesConfig makes two node databases with schema and a config naming them.
func nodesConfig(t *testing.T, schema string) (cfgPath, a, b string) {
	t.Helper()
	p := shared.Get(t)
	a, b = p.DBs(t)
	for _, d := range []string{a, b} {
		execSQL(t, d, schema)
	}
	cfgPath = writeConfig(t, fmt.Sprintf("name: mesh\nnodes:\n  - name: a\n    dsn: %q\n  - name: b\n    dsn: %q\n", a, b))
	return cfgPath, a, b
}

// A multi-master set through the CLI: install on both nodes, replicate,
// status with one row per direction, tables per node, verify pairwise.
func TestCLIMultiMaster(t *testing.T) {
	cfg, a, b := nodesConfig(t, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
	out, errOut, code := cli(t, "", "-c", cfg, "install")
	want := `node a: installed capture schema (version 3)
node a: created trigger on public.orders (id)
node b: installed bookkeeping schema (version 3), applying a's changes from now on
node b: installed capture schema (version 3)
node b: created trigger on public.orders (id)
node a: installed bookkeeping schema (version 3), applying b's changes from now on
`
	if code != 0 || out != want {
		t.Fatalf("install: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	execSQL(t, a, "INSERT INTO orders VALUES (1, 'on a')")
	execSQL(t, b, "INSERT INTO orders VALUES (2, 'on b')")

	out, errOut, code = cli(t, "", "-c", cfg, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: code %d, %v\n%s\n%s", code, err, out, errOut)
	}
	var rows []string
	for _, r := range st.Replicas {
		rows = append(rows, fmt.Sprintf("%s %s %d", r.Name, r.State, *r.Pending))
	}
	if got := strings.Join(rows, ", "); got != "a->b behind 1, b->a behind 1" || st.Origin != "nodes a, b" || st.LogEvents != 2 {
		t.Fatalf("status --json: rows %q, origin %q, log events %d", got, st.Origin, st.LogEvents)
	}

	if out, errOut, code = cli(t, "", "-c", cfg, "replicate"); code != 0 || out != "applied 2 events; 2 direction(s) caught up\n" {
		t.Fatalf("replicate: code %d %q %q", code, out, errOut)
	}
	for _, d := range []string{a, b} {
		if got := queryText(t, d, "SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM orders"); got != "1 on a, 2 on b" {
			t.Fatalf("orders = %q", got)
		}
	}

	out, _, code = cli(t, "", "-c", cfg, "tables", "--json")
	var tables []tableJSON
	if err := json.Unmarshal([]byte(out), &tables); err != nil || code != 0 {
		t.Fatalf("tables --json: code %d, %v\n%s", code, err, out)
	}
	rows = nil
	for _, tb := range tables {
		rows = append(rows, fmt.Sprintf("%s %s %s %d", tb.Node, tb.Table, tb.Status, tb.Pending))
	}
	if got := strings.Join(rows, ", "); got != "a public.orders installed 0, b public.orders installed 0" {
		t.Fatalf("tables --json: %s", got)
	}

	out, errOut, code = cli(t, "", "-c", cfg, "verify")
	if code != 0 || !strings.HasPrefix(out, "a->b public.orders: equal (2 rows") {
		t.Fatalf("verify: code %d\n%s\n%s", code, out, errOut)
	}
	// A difference is found, named by its pair.
	execSQL(t, b, "SET session_replication_role = replica; UPDATE orders SET note = 'drift' WHERE id = 1")
	out, _, code = cli(t, "", "-c", cfg, "verify")
	if code != exitProblems || !strings.Contains(out, "a->b public.orders: DIFFERENT: 1 different") {
		t.Fatalf("verify of a drifted pair: code %d\n%s", code, out)
	}
	execSQL(t, a, "UPDATE orders SET note = 'healed' WHERE id = 1") // b had a's version: no conflict

	// A conflict: both change row 2; b's, the later, wins on both.
	execSQL(t, a, "UPDATE orders SET note = 'a2' WHERE id = 2")
	execSQL(t, b, "UPDATE orders SET note = 'b2' WHERE id = 2")
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate"); code != 0 {
		t.Fatalf("replicate: %d %s", code, errOut)
	}
	conflicts := func() []conflictJSON {
		t.Helper()
		out, errOut, code := cli(t, "", "-c", cfg, "conflicts", "--json")
		var cs []conflictJSON
		if err := json.Unmarshal([]byte(out), &cs); err != nil || code != 0 {
			t.Fatalf("conflicts --json: code %d, %v\n%s\n%s", code, err, out, errOut)
		}
		return cs
	}
	cs := conflicts()
	rows = nil
	for _, c := range cs {
		var w struct{ N string }
		if err := json.Unmarshal(c.Winner, &w); err != nil {
			t.Fatalf("winner %s: %v", c.Winner, err)
		}
		rows = append(rows, fmt.Sprintf("%s %s %s %s %s local=%s captured=%s winner=%s", c.Replica, c.Table, c.Kind, c.Policy, c.Outcome,
			c.LocalRow["note"], c.Captured["note"], w.N))
	}
	slices.Sort(rows)
	want = "a->b public.orders update_origin_differs latest kept local=b2 captured=a2 winner=b\n" +
		"b->a public.orders update_origin_differs latest applied local=a2 captured=b2 winner=b"
	if got := strings.Join(rows, "\n"); got != want {
		t.Fatalf("conflicts:\n%s\nwant\n%s", got, want)
	}
	for _, d := range []string{a, b} {
		if got := queryText(t, d, "SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM orders"); got != "1 healed, 2 b2" {
			t.Fatalf("orders = %q", got)
		}
	}
	// The operator takes the other version: a's, written on b, reaches a.
	var onB conflictJSON
	for _, c := range cs {
		if c.Replica == "a->b" {
			onB = c
		}
	}
	out, errOut, code = cli(t, "", "-c", cfg, "conflicts", "resolve", "--replica", "a->b", fmt.Sprint(onB.ID), "other")
	if code != 0 || !strings.Contains(out, "wrote the other version of public.orders {\"id\": 2} on node b; the change reaches every node") {
		t.Fatalf("resolve: code %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate"); code != 0 {
		t.Fatalf("replicate: %d %s", code, errOut)
	}
	for _, d := range []string{a, b} {
		if got := queryText(t, d, "SELECT string_agg(id || ' ' || note, ', ' ORDER BY id) FROM orders"); got != "1 healed, 2 a2" {
			t.Fatalf("after resolve, orders = %q", got)
		}
	}
	for _, c := range conflicts() {
		if c.Review != "other" || c.ReviewedAt == "" {
			t.Errorf("conflict %d on %s not marked reviewed: %q %q", c.ID, c.Replica, c.Review, c.ReviewedAt)
		}
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "conflicts", "resolve", "--replica", "a->b", "999", "keep"); code != exitErr ||
		!strings.Contains(errOut, "no conflict 999 recorded for a->b") {
		t.Fatalf("resolve of no conflict: %d %s", code, errOut)
	}
	// A command of one-way sets says so, and connects nowhere.
	if _, errOut, code := cli(t, "", "-c", cfg, "add-table", "orders"); code != exitErr ||
		!strings.Contains(errOut, "a multi-master set (nodes:) has no one origin: this command works on one-way sets only") {
		t.Fatalf("add-table on nodes: %d %s", code, errOut)
	}
}

// Bad multi-master configs and nodes: one clear line each, nothing changed.
func TestCLIMultiMasterBadInput(t *testing.T) {
	p := shared.Get(t)
	a, b := p.DBs(t)
	for _, d := range []string{a, b} {
		execSQL(t, d, "CREATE TABLE orders (id int PRIMARY KEY)")
	}
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"nodes with origin", fmt.Sprintf("nodes:\n  - {name: a, dsn: %q}\n  - {name: b, dsn: %q}\norigin:\n  dsn: %q\n", a, b, a),
			[]string{"pgreplica.yaml:1: nodes: a multi-master set lists nodes: instead of origin: and replicas:; keep one of the two shapes"}},
		{"a node listed twice", fmt.Sprintf("nodes:\n  - {name: a, dsn: %q}\n  - {name: b, dsn: %q}\n", a, a),
			[]string{"pgreplica.yaml:3: nodes[1].dsn: same database as nodes[0]: a node is listed twice"}},
		{"the same database under two DSNs", fmt.Sprintf("nodes:\n  - {name: a, dsn: %q}\n  - {name: b, dsn: %q}\n", a, a+" application_name=other"),
			[]string{"nodes a and b are the same database: list each node once; nothing was installed"}},
		{"a node unreachable", fmt.Sprintf("nodes:\n  - {name: a, dsn: %q}\n  - {name: b, dsn: \"host=127.0.0.1 port=1 dbname=x connect_timeout=2\"}\n", a),
			[]string{"Error: connect to node b (", "@127.0.0.1:1/x): dial error: dial tcp 127.0.0.1:1: connect: connection refused; nothing was installed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, c.yaml)
			_, errOut, code := cli(t, "", "-c", cfg, "install")
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			for _, w := range c.want {
				if code != exitErr || len(lines) != 1 || !strings.Contains(lines[0], w) {
					t.Fatalf("install: code %d, stderr:\n%s\nwant one line with %q", code, errOut, w)
				}
			}
			for _, d := range []string{a, b} {
				if got := queryText(t, d, pgreplicaObjects); got != "" {
					t.Fatalf("install changed a node: %s", got)
				}
			}
		})
	}
}

// Sequences on multi-master: two nodes drawing from copies of one sequence
// would give the same ids. install refuses, naming it, and changes nothing;
// with --yes it gives each node its own offset, and the ids never collide.
func TestCLIMultiMasterSequences(t *testing.T) {
	cfg, a, b := nodesConfig(t, "CREATE TABLE items (id serial PRIMARY KEY, what text); CREATE TABLE spaced (id int GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 2) PRIMARY KEY)")
	execSQL(t, a, "INSERT INTO items (what) SELECT 'x' FROM generate_series(1, 5)")
	execSQL(t, b, "INSERT INTO items (what) SELECT 'x' FROM generate_series(1, 5)")
	execSQL(t, b, "ALTER TABLE spaced ALTER COLUMN id RESTART WITH 2") // a: 1, 3, 5...; b: 2, 4, 6...: safe
	_, errOut, code := cli(t, "", "-c", cfg, "install")
	want := "Error: sequence public.items_id_seq can give the same value on nodes a and b: both step by 1 from offset 0; nothing was installed; give each node its own values (distinct ranges, or INCREMENT BY 2 with an offset per node), or let install set them: pgreplica install --yes"
	if code != exitErr || strings.TrimSpace(errOut) != want {
		t.Fatalf("install: code %d\n%s\nwant\n%s", code, errOut, want)
	}
	for _, d := range []string{a, b} {
		if got := queryText(t, d, pgreplicaObjects); got != "" {
			t.Fatalf("install changed a node: %s", got)
		}
	}
	out, errOut, code := cli(t, "", "-c", cfg, "install", "--yes")
	if code != 0 || !strings.HasPrefix(out, "node a: sequence public.items_id_seq now gives 8, 10, 12...\nnode b: sequence public.items_id_seq now gives 9, 11, 13...\n") {
		t.Fatalf("install --yes: code %d\n%s\n%s", code, out, errOut)
	}
	execSQL(t, a, "INSERT INTO items (what) SELECT 'on a' FROM generate_series(1, 3)")
	execSQL(t, b, "INSERT INTO items (what) SELECT 'on b' FROM generate_series(1, 3)")
	if _, errOut, code := cli(t, "", "-c", cfg, "replicate"); code != 0 {
		t.Fatalf("replicate: %d %s", code, errOut)
	}
	for _, d := range []string{a, b} {
		if got := queryText(t, d, "SELECT count(*) || ' ' || count(DISTINCT id) FROM items"); got != "11 11" {
			t.Fatalf("items: %s rows and distinct ids", got)
		}
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install again (sequences now safe): %d %s", code, errOut)
	}
}

// hotLoad writes random INSERT, UPDATE and DELETE on 20 hot keys of t at
// dsn until ctx ends; a deadlock with the engine costs that transaction.
func hotLoad(ctx context.Context, t *testing.T, dsn, who string) func() {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.Close(context.Background())
		for ctx.Err() == nil {
			_, err := c.Exec(ctx, fmt.Sprintf(`DO $$
BEGIN
    FOR i IN 1..3 LOOP
        CASE floor(random() * 3)::int
        WHEN 0 THEN INSERT INTO t VALUES (1 + floor(random() * 20)::int, '%[1]s', i) ON CONFLICT (id) DO NOTHING;
        WHEN 1 THEN UPDATE t SET v = '%[1]s ' || md5(random()::text), n = n + 1 WHERE id = 1 + floor(random() * 20)::int;
        ELSE DELETE FROM t WHERE id = 1 + floor(random() * 20)::int;
        END CASE;
    END LOOP;
END $$`, who))
			if err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "40P01") {
				t.Errorf("load on %s: %v", who, err)
				return
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return func() { <-done }
}

// Convergence under faults, for each policy that resolves: both nodes
// write the same 20 hot keys while the daemon is SIGKILLed and restarted,
// and node b's connections are cut;
// after quiescence the pair verifies equal, and every conflict met on both
// nodes has the same winner on both.
func TestDaemonMultiMasterConvergesThroughKillsAndACut(t *testing.T) {
	for _, policy := range []string{"latest", "priority"} {
		t.Run(policy, func(t *testing.T) { daemonConvergence(t, policy) })
	}
}

func daemonConvergence(t *testing.T, policy string) {
	p := shared.Get(t)
	a, b := p.DBs(t)
	for _, d := range []string{a, b} {
		execSQL(t, d, "CREATE TABLE t (id int PRIMARY KEY, v text, n int)")
	}
	c, err := pgx.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.Start(fmt.Sprintf("%s:%d", c.Host, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	viaB := strings.Replace(b, fmt.Sprintf("port=%d", c.Port), fmt.Sprintf("port=%d", px.Port()), 1)
	cfg := writeConfig(t, fmt.Sprintf("name: mesh\nnodes:\n  - {name: a, dsn: %q}\n  - {name: b, dsn: %q}\n"+
		"poll_interval: 200ms\nconflicts:\n  policy: "+policy+"\n"+faultTimeouts, a, viaB))
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	waits := []func(){hotLoad(ctx, t, a, "a"), hotLoad(ctx, t, b, "b")}
	for round := 0; round < 3; round++ {
		d := startDaemon(t, cfg)
		time.Sleep(700 * time.Millisecond)
		if round == 1 {
			px.Reset() // node b's connections cut mid-run
			time.Sleep(500 * time.Millisecond)
		}
		d.cmd.Process.Kill() // SIGKILL
		<-d.done
	}
	stopLoad()
	for _, w := range waits {
		w()
	}
	if t.Failed() {
		return
	}
	d := startDaemon(t, cfg)
	same := func() bool {
		return queryText(t, a, "SELECT coalesce(string_agg(format('%s', t), ',' ORDER BY id), '') FROM t") ==
			queryText(t, b, "SELECT coalesce(string_agg(format('%s', t), ',' ORDER BY id), '') FROM t")
	}
	eventually(t, 30*time.Second, "nodes equal", func() bool {
		return same() && count(t, a, "SELECT count(*) FROM pgreplica.log") > 0
	})
	time.Sleep(time.Second) // anything still in flight
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if out, errOut, code := cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify: code %d\n%s\n%s", code, out, errOut)
	}
	const pairs = `SELECT coalesce(string_agg(p || '|' || w, E'\n' ORDER BY p), '') FROM (
	  SELECT DISTINCT least(local_version::text, remote_version::text) || ' ' || greatest(local_version::text, remote_version::text) AS p, winner::text AS w
	    FROM pgreplica.conflict) x`
	onA := map[string]string{}
	for _, l := range strings.Split(queryText(t, a, pairs), "\n") {
		if k, w, ok := strings.Cut(l, "|"); ok {
			onA[k] = w
		}
	}
	met := 0
	for _, l := range strings.Split(queryText(t, b, pairs), "\n") {
		if k, w, ok := strings.Cut(l, "|"); ok {
			if prev, seen := onA[k]; seen {
				met++
				if prev != w {
					t.Errorf("conflict %s: winner %s on a, %s on b", k, prev, w)
				}
			}
		}
	}
	if len(onA) == 0 || met == 0 {
		t.Fatalf("%d conflicts on a, %d met on both: the test made none", len(onA), met)
	}
	t.Logf("%d conflicts on a, %d of them met on b too", len(onA), met)
}
