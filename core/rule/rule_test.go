package rule_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/pgtest"
	"pgreplica/core/replay"
	"pgreplica/core/tablecopy"
	"pgreplica/core/verify"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

const schema = `
CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, deleted bool NOT NULL DEFAULT false,
                        ssn text, email text, note text);
CREATE TABLE plain (id int PRIMARY KEY, v text);
`

// replicaSchema is the replicas' tables: customers without ssn, email as
// contact_email.
const replicaSchema = `
CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, deleted bool NOT NULL DEFAULT false,
                        contact_email text, note text);
CREATE TABLE plain (id int PRIMARY KEY, v text);
`

const euFilter = "region = 'eu' AND NOT deleted"

type env struct {
	t        *testing.T
	ctx      context.Context
	cfg      *config.Config
	origin   *pgx.Conn
	replicas []*pgx.Conn
}

// newEnv makes an origin and n replicas (databases of the shared pair),
// with the schemas, and a config whose replica i has rules[i].
func newEnv(t *testing.T, rules ...[]config.TableRule) *env {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	o, r := p.DBs(t)
	dsns := []string{r}
	for len(dsns) < len(rules) {
		_, more := p.DBs(t)
		dsns = append(dsns, more)
	}
	cfg, err := config.FromFlags("test", o, dsns)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Purge.Interval = 0
	cfg.PollInterval = 50 * time.Millisecond
	for i := range rules {
		cfg.Replicas[i].Tables = rules[i]
	}
	e := &env{t: t, ctx: ctx, cfg: cfg, origin: connect(t, o)}
	exec(t, e.origin, schema)
	for _, dsn := range dsns {
		c := connect(t, dsn)
		exec(t, c, replicaSchema)
		e.replicas = append(e.replicas, c)
	}
	return e
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) install() {
	e.t.Helper()
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		e.t.Fatalf("install: %v", err)
	}
}

// catchUp applies everything committed on the origin to replica i.
func (e *env) catchUp(i int) {
	e.t.Helper()
	err := replay.Aligned(e.ctx, e.cfg, e.cfg.Replicas[i].Name, func(context.Context, pgx.Tx, pgx.Tx, replay.Snapshot, string) error { return nil })
	if err != nil {
		e.t.Fatalf("catch up %s: %v", e.cfg.Replicas[i].Name, err)
	}
}

func rowsOf(t *testing.T, c *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT x::text FROM ("+sql+") x")
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// same fails unless replica i holds exactly the origin's rows that
// originSQL selects (the rule's projection, in the replica's column order).
func (e *env) same(step string, i int, originSQL string) {
	e.t.Helper()
	want := rowsOf(e.t, e.origin, originSQL)
	got := rowsOf(e.t, e.replicas[i], "SELECT id, region, deleted, contact_email, note FROM customers ORDER BY id")
	if !reflect.DeepEqual(got, want) {
		e.t.Fatalf("%s: replica %s has\n  %v\nwant (the origin's projection)\n  %v", step, e.cfg.Replicas[i].Name, got, want)
	}
}

const euProjection = "SELECT id, region, deleted, email, note FROM customers WHERE " + euFilter + " ORDER BY id"

func euRule() config.TableRule {
	return config.TableRule{Table: "public.customers", Where: euFilter,
		Columns: config.Columns{Exclude: []string{"ssn"}}, Rename: map[string]string{"email": "contact_email"}}
}

// TestRowsMoveInAndOutOfTheFilter: after each step the replica equals the
// filtered projection of the origin.
func TestRowsMoveInAndOutOfTheFilter(t *testing.T) {
	e := newEnv(t, []config.TableRule{euRule()})
	e.install()
	o := e.origin
	steps := []struct{ name, sql string }{
		{"insert some in, some out", `INSERT INTO customers VALUES (1, 'eu', false, 's1', 'a@x', 'n1'), (2, 'us', false, 's2', 'b@x', 'n2'),
		                                                        (3, 'eu', true, 's3', 'c@x', 'n3'), (4, 'eu', false, 's4', 'd@x', 'n4')`},
		{"update into the filter", `UPDATE customers SET region = 'eu' WHERE id = 2`},
		{"update out of the filter", `UPDATE customers SET deleted = true WHERE id = 2`},
		{"update back into the filter", `UPDATE customers SET deleted = false, note = 'back' WHERE id = 2`},
		{"update a column outside the projection only", `UPDATE customers SET ssn = 'changed' WHERE id = 1`},
		{"update in the filter, key changes", `UPDATE customers SET id = 10, note = 'moved' WHERE id = 4`},
		{"delete while in", `DELETE FROM customers WHERE id = 10`},
		{"delete while out", `DELETE FROM customers WHERE id = 3`},
		{"more rows", `INSERT INTO customers SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g % 3 = 0, 'ssn' || g, 'e' || g, 'n' || g FROM generate_series(20, 60) g`},
		{"one update moves some in and some out", `UPDATE customers SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, deleted = NOT deleted WHERE id >= 20`},
		{"one update in and out in one transaction", `UPDATE customers SET region = 'us' WHERE id = 1; UPDATE customers SET region = 'eu' WHERE id = 1`},
		{"truncate", `TRUNCATE customers`},
		{"after the truncate", `INSERT INTO customers VALUES (1, 'eu', false, 's1', 'a@x', 'again'), (2, 'us', false, 's2', 'b@x', 'n2')`},
	}
	for _, s := range steps {
		exec(t, o, s.sql)
		e.catchUp(0)
		e.same(s.name, 0, euProjection)
	}
	// ssn is excluded from every replica: never in the log.
	var leaked int64
	if err := o.QueryRow(e.ctx, `SELECT count(*) FROM pgreplica.log WHERE concat(key::text, data::text) LIKE '%s1%' OR data ? 'ssn'`).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	var logged int64
	if err := o.QueryRow(e.ctx, `SELECT count(*) FROM pgreplica.log WHERE table_name = 'customers'`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 || logged < 10 {
		t.Errorf("pgreplica.log: %d of %d customer events carry ssn", leaked, logged)
	}
}

// TestTwoReplicasSyncVerifyRepair: two replicas with different rules are
// copied under them, verified equal to their projections, a planted
// difference is found and repaired; then a changed filter, installed and
// synced again while the other replica goes on, gives the new projection.
func TestTwoReplicasSyncVerifyRepair(t *testing.T) {
	us := config.TableRule{Table: "public.customers", Where: "region = 'us'",
		Columns: config.Columns{Include: []string{"region", "deleted", "email"}}, Rename: map[string]string{"email": "contact_email"}}
	e := newEnv(t, []config.TableRule{euRule()}, []config.TableRule{us})
	exec(t, e.origin, `INSERT INTO customers SELECT g, (ARRAY['eu','us','asia'])[1 + g % 3], g % 5 = 0, 'ssn' || g, 'e' || g, 'n' || g FROM generate_series(1, 3000) g`)
	if err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{}, nil); err != nil {
		t.Fatalf("sync: %v", err)
	}
	usProjection := "SELECT id, region, deleted, email, NULL::text FROM customers WHERE region = 'us' ORDER BY id"
	e.same("eu after sync", 0, euProjection)
	e.same("us after sync", 1, usProjection)

	exec(t, e.origin, `UPDATE customers SET region = 'us' WHERE id % 7 = 0`)
	exec(t, e.origin, `UPDATE customers SET region = 'eu', note = 'to eu' WHERE id % 11 = 0`)
	exec(t, e.origin, `DELETE FROM customers WHERE id % 13 = 0`)
	res, err := verify.Run(e.ctx, e.cfg, verify.Options{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !res.Equal {
		t.Fatalf("verify after changes: not equal: %+v", res)
	}
	e.same("eu after verify", 0, euProjection)
	e.same("us after verify", 1, usProjection)

	// A planted difference in the us replica is found and repaired.
	exec(t, e.replicas[1], `UPDATE customers SET contact_email = 'planted' WHERE id = (SELECT min(id) FROM customers)`)
	exec(t, e.replicas[1], `DELETE FROM customers WHERE id = (SELECT max(id) FROM customers)`)
	exec(t, e.replicas[1], `INSERT INTO customers (id, region) VALUES (100000, 'us')`)
	res, err = verify.Run(e.ctx, e.cfg, verify.Options{Repair: true})
	if err != nil {
		t.Fatalf("verify --repair: %v", err)
	}
	var found verify.TableResult
	for _, rr := range res.Replicas {
		for _, tr := range rr.Tables {
			if tr.Table.Name == "customers" {
				if rr.Name == e.cfg.Replicas[0].Name && !tr.Equal {
					t.Errorf("eu replica: not equal: %+v", tr)
				}
				if rr.Name == e.cfg.Replicas[1].Name {
					found = tr
				}
			}
		}
	}
	if found.DifferentCount != 1 || found.MissingCount != 1 || found.ExtraCount != 1 || found.Repaired == nil {
		t.Fatalf("us replica: want 1 different, 1 missing, 1 extra, repaired; got %+v", found)
	}
	e.same("us after repair", 1, usProjection)

	// The eu filter changes: install says it needs a new copy, sync copies
	// it under the new rule.
	e.cfg.Replicas[0].Tables[0].Where = "region IN ('eu', 'asia')"
	var lines []string
	if err := capture.Install(e.ctx, e.cfg, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatalf("install: %v", err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "replica replica: public.customers: rule changed: the replica needs a new copy under it: pgreplica sync --replica replica --table public.customers") {
		t.Errorf("install did not say the table needs a new copy:\n%s", strings.Join(lines, "\n"))
	}
	exec(t, e.origin, `UPDATE customers SET note = 'asia!' WHERE region = 'asia' AND id < 100`)
	if err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Replica: e.cfg.Replicas[0].Name, Tables: []pg.Table{{Schema: "public", Name: "customers"}}}, nil); err != nil {
		t.Fatalf("sync --table: %v", err)
	}
	exec(t, e.origin, `UPDATE customers SET region = 'asia' WHERE id % 17 = 0`)
	e.catchUp(0)
	e.catchUp(1)
	e.same("eu under the new filter", 0, "SELECT id, region, deleted, email, note FROM customers WHERE region IN ('eu', 'asia') ORDER BY id")
	e.same("us goes on", 1, usProjection)
}

// TestBadRules: each bad rule is refused with its place in the config
// file, and nothing is installed.
func TestBadRules(t *testing.T) {
	cases := []struct {
		name, rule, want string
	}{
		{"syntax error", `where: "region = 'eu' AND"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "region = 'eu' AND" refused by PostgreSQL: syntax error at or near ")"`},
		{"unknown column", `where: "regio = 'eu'"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "regio = 'eu'" refused by PostgreSQL: column "regio" does not exist (Perhaps you meant to reference the column "region".)`},
		{"subquery", `where: "id IN (SELECT id FROM plain)"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "id IN (SELECT id FROM plain)" refused by PostgreSQL: cannot use subquery in a filter`},
		{"volatile function", `where: "random() < 0.5"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "random() < 0.5" refused by PostgreSQL: the filter is not immutable (it may use only immutable functions: no now(), random(), other tables...)`},
		{"not boolean", `where: "region"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "region" refused by PostgreSQL: the filter must be boolean, not text`},
		{"two statements", `where: "true)) STORED; DROP TABLE plain; --"` + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].where: filter "true)) STORED; DROP TABLE plain; --" refused by PostgreSQL: cannot insert multiple commands into a prepared statement`},
		{"excluded key", `columns: {exclude: [id, ssn]}`,
			`pgreplica.yaml:10: replicas[0].tables[0].columns: column id is the key of public.customers: the key always travels; remove it from exclude`},
		{"unknown column in columns", `columns: {include: [nope, region, email]}`,
			`pgreplica.yaml:10: replicas[0].tables[0].columns: public.customers has no column nope (generated columns are not carried)`},
		{"required column left out", `columns: {exclude: [region, ssn]}`,
			`pgreplica.yaml:10: replicas[0].tables[0].columns: replica replica: column region of public.customers is NOT NULL without a default, and the rule does not send it; send it, or give it a default there`},
		{"transform of the key", "transform: {id: \"id + 1\"}" + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].transform: column id is the key of public.customers: it cannot be transformed (the replica finds its rows by it)`},
		{"volatile transform", "transform: {note: \"note || now()\"}" + "\n        columns: {exclude: [ssn]}",
			`pgreplica.yaml:10: replicas[0].tables[0].transform: transform of note "note || now()" refused by PostgreSQL: the transform is not immutable (it may use only immutable functions: no now(), random(), other tables...)`},
		{"table not replicated", `columns: {exclude: [ssn]}` + "\n      - table: public.nosuch",
			`pgreplica.yaml:11: replicas[0].tables[1].table: table public.nosuch is not replicated (no such table, not selected by tables.include/exclude, or without a key)`},
	}
	e := newEnv(t, nil)
	dir := t.TempDir()
	t.Chdir(dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			yaml := "name: test\norigin:\n  dsn: \"" + e.cfg.Origin.DSN + "\"\nreplicas:\n  - name: replica\n    dsn: \"" + e.cfg.Replicas[0].DSN + "\"\n" +
				"    tables:\n      - table: public.customers\n        rename: {email: contact_email}\n        " + c.rule + "\n"
			if err := os.WriteFile(filepath.Join(dir, "pgreplica.yaml"), []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load("pgreplica.yaml")
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			err = capture.Install(e.ctx, cfg, func(string) {})
			if err == nil || err.Error() != c.want {
				t.Fatalf("install:\n got %v\nwant %s", err, c.want)
			}
			var installed bool
			if err := e.origin.QueryRow(e.ctx, "SELECT to_regnamespace('pgreplica') IS NOT NULL").Scan(&installed); err != nil {
				t.Fatal(err)
			}
			if installed {
				t.Fatal("a refused rule installed the capture schema")
			}
		})
	}
}

// TestTargetTable: a replica receives a table under another name (and
// schema); sync, the stream and verify follow it. Two origin tables into
// one replica table are refused.
func TestTargetTable(t *testing.T) {
	tr := euRule()
	tr.Target = "crm.customers_eu"
	e := newEnv(t, []config.TableRule{tr})
	exec(t, e.replicas[0], `CREATE SCHEMA crm; ALTER TABLE customers SET SCHEMA crm; ALTER TABLE crm.customers RENAME TO customers_eu`)
	exec(t, e.origin, `INSERT INTO customers SELECT g, (ARRAY['eu','us'])[1 + g % 2], false, 'ssn' || g, 'e' || g, 'n' || g FROM generate_series(1, 100) g`)
	if err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{}, nil); err != nil {
		t.Fatalf("sync: %v", err)
	}
	same := func(step string) {
		t.Helper()
		want := rowsOf(t, e.origin, euProjection)
		got := rowsOf(t, e.replicas[0], "SELECT id, region, deleted, contact_email, note FROM crm.customers_eu ORDER BY id")
		if !reflect.DeepEqual(got, want) || len(want) == 0 {
			t.Fatalf("%s: crm.customers_eu has\n  %v\nwant\n  %v", step, got, want)
		}
	}
	same("after sync")
	exec(t, e.origin, `UPDATE customers SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id % 3 = 0`)
	exec(t, e.origin, `DELETE FROM customers WHERE id % 7 = 0`)
	e.catchUp(0)
	same("after changes")
	exec(t, e.origin, `TRUNCATE customers`)
	exec(t, e.origin, `INSERT INTO customers VALUES (1, 'eu', false, 's', 'e', 'n')`)
	e.catchUp(0)
	same("after a truncate")
	exec(t, e.replicas[0], `UPDATE crm.customers_eu SET note = 'planted'`)
	res, err := verify.Run(e.ctx, e.cfg, verify.Options{Repair: true})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if tr := res.Replicas[0].Tables[0]; tr.DifferentCount != 1 || tr.Repaired == nil || tr.Repaired.Updated != 1 {
		t.Fatalf("verify of crm.customers_eu: %+v", res.Replicas[0].Tables)
	}
	same("after the repair")

	// public.plain into crm.customers_eu too: refused by the config.
	e.cfg.Replicas[0].Tables = append(e.cfg.Replicas[0].Tables, config.TableRule{Table: "public.plain", Target: "crm.customers_eu",
		Field: "replicas[0].tables[1]", Lines: map[string]string{"target": "pgreplica.yaml:14"}})
	want := `replicas[0].tables[1].target: replicas[0].tables[0] goes to crm.customers_eu too: several tables into one is refused (their keys could collide)`
	if err := e.cfg.Validate(); err == nil || err.Error() != want {
		t.Fatalf("validate with two tables into one:\n got %v\nwant %s", err, want)
	}
	// public.plain into public.customers, where public.customers goes:
	// refused by install, nothing changed.
	e.cfg.Replicas[0].Tables[0].Target = ""
	e.cfg.Replicas[0].Tables[1].Target = "public.customers"
	exec(t, e.replicas[0], `CREATE TABLE public.customers (id int PRIMARY KEY, region text, deleted bool NOT NULL DEFAULT false,
	                        contact_email text, note text, v text)`)
	before := rowsOf(t, e.origin, "SELECT relid::regclass::text || omit::text || filters::text FROM pgreplica.capture_rule")
	err = capture.Install(e.ctx, e.cfg, func(string) {})
	want = `pgreplica.yaml:14: replicas[0].tables[1].target: replica replica: public.customers and public.plain both go to public.customers: several tables into one is refused (their keys could collide)`
	if err == nil || err.Error() != want {
		t.Fatalf("install with a table into another's:\n got %v\nwant %s", err, want)
	}
	if after := rowsOf(t, e.origin, "SELECT relid::regclass::text || omit::text || filters::text FROM pgreplica.capture_rule"); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused install changed the capture rules: %v, was %v", after, before)
	}
}

// TestTransforms: a replica receives computed values of some columns, from
// sync, the stream and verify alike; a column every replica receives only
// transformed is never logged as it is.
func TestTransforms(t *testing.T) {
	tr := euRule()
	tr.Transform = map[string]string{"email": "left(email, 1) || '***'", "note": "upper(note) || region"}
	e := newEnv(t, []config.TableRule{tr})
	exec(t, e.origin, `INSERT INTO customers SELECT g, (ARRAY['eu','us'])[1 + g % 2], false, 'ssn' || g, 'mail' || g || '@x', 'n' || g FROM generate_series(1, 50) g`)
	if err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{}, nil); err != nil {
		t.Fatalf("sync: %v", err)
	}
	projection := "SELECT id, region, deleted, left(email, 1) || '***', upper(note) || region FROM customers WHERE " + euFilter + " ORDER BY id"
	e.same("after sync", 0, projection)
	steps := []string{
		`INSERT INTO customers VALUES (100, 'eu', false, 's', 'zed@x', 'new')`,
		`UPDATE customers SET note = 'changed' WHERE id = 100`,
		`UPDATE customers SET region = 'us' WHERE id = 100`,
		`UPDATE customers SET region = 'eu', email = 'back@x' WHERE id = 100`,
		`UPDATE customers SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id % 4 = 0`,
		`DELETE FROM customers WHERE id % 5 = 0`,
	}
	for _, s := range steps {
		exec(t, e.origin, s)
		e.catchUp(0)
		e.same(s, 0, projection)
	}
	res, err := verify.Run(e.ctx, e.cfg, verify.Options{})
	if err != nil || !res.Equal {
		t.Fatalf("verify: %v %+v", err, res)
	}
	var leaked int64
	if err := e.origin.QueryRow(e.ctx, `SELECT count(*) FROM pgreplica.log WHERE data ? 'email' OR data ? 'note' OR data::text LIKE '%@x%'`).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 {
		t.Errorf("%d events carry email or note as they are", leaked)
	}
}

// TestUpdateOfAColumnOneReplicaDoesNotReceive: an UPDATE that changed only
// a column a replica does not receive is nothing for that replica, and
// reaches the other.
func TestUpdateOfAColumnOneReplicaDoesNotReceive(t *testing.T) {
	without := config.TableRule{Table: "public.customers", Columns: config.Columns{Exclude: []string{"ssn", "note"}},
		Rename: map[string]string{"email": "contact_email"}}
	with := config.TableRule{Table: "public.customers", Columns: config.Columns{Exclude: []string{"ssn"}},
		Rename: map[string]string{"email": "contact_email"}}
	e := newEnv(t, []config.TableRule{without}, []config.TableRule{with})
	e.install()
	exec(t, e.origin, `INSERT INTO customers VALUES (1, 'eu', false, 's', 'a@x', 'n1')`)
	exec(t, e.origin, `UPDATE customers SET note = 'only the note'`)
	e.catchUp(0)
	e.catchUp(1)
	e.same("without note", 0, "SELECT id, region, deleted, email, NULL::text FROM customers ORDER BY id")
	e.same("with note", 1, "SELECT id, region, deleted, email, note FROM customers ORDER BY id")
}
