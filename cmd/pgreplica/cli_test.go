package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

// dbs creates an origin and a replica database with schema on both and
// returns a config file naming them.
func dbs(t *testing.T, schema string) (cfgPath, originDSN, replicaDSN string) {
	t.Helper()
	p := shared.Get(t)
	originDSN, replicaDSN = p.DBs(t)
	for _, d := range []string{originDSN, replicaDSN} {
		execSQL(t, d, schema)
	}
	cfgPath = writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\n", originDSN, replicaDSN))
	return cfgPath, originDSN, replicaDSN
}

func execSQL(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryText(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	if err := c.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// pgreplicaObjects lists what pgreplica has put in a database.
const pgreplicaObjects = `SELECT coalesce(string_agg(x, ','), '') FROM (
  SELECT nspname::text AS x FROM pg_namespace WHERE nspname = 'pgreplica'
  UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'pgreplica%') s`

func TestCLIInstallTablesAndUninstall(t *testing.T) {
	cfg, origin, replica := dbs(t, `CREATE TABLE orders (id int PRIMARY KEY, note text);
	                                CREATE TABLE audit (at timestamptz, what text);
	                                CREATE TABLE "Line Items" (order_id int, n int, PRIMARY KEY (order_id, n));`)
	out, errOut, code := cli(t, "", "-c", cfg, "install")
	want := `origin: installed capture schema (version 3)
created trigger on public."Line Items" (order_id,n)
public.audit has no primary key: not replicated
created trigger on public.orders (id)
replica r1: installed bookkeeping schema (version 3), replicating from now on
`
	if code != 0 || out != want {
		t.Fatalf("install: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	execSQL(t, origin, "INSERT INTO orders VALUES (1, 'a'), (2, 'b')")
	// As pgreplica sync leaves a table it is copying.
	execSQL(t, replica, "INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state) VALUES ('shop', 'public', 'Line Items', 'copying')")

	out, _, code = cli(t, "", "-c", cfg, "tables", "--json")
	var tables []map[string]any
	if err := json.Unmarshal([]byte(out), &tables); err != nil || code != 0 {
		t.Fatalf("tables --json: code %d, %v\n%s", code, err, out)
	}
	got := []string{}
	for _, tb := range tables {
		got = append(got, fmt.Sprintf("%v %v %v %v %v %v", tb["table"], tb["key"], tb["status"], tb["state"], tb["replicas"], tb["pending"]))
	}
	wantTables := []string{
		"public.audit [] no primary key - <nil> 0",
		`public."Line Items" [order_id n] installed copying map[r1:copying] 0`,
		"public.orders [id] installed replicating <nil> 2",
	}
	if strings.Join(got, "\n") != strings.Join(wantTables, "\n") {
		t.Fatalf("tables --json:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantTables, "\n"))
	}

	out, _, code = cli(t, "", "-c", cfg, "remove-table", "--yes", "public.orders")
	if code != 0 || out != "removed trigger from public.orders\n" {
		t.Fatalf("remove-table: %d %q", code, out)
	}
	// A removed table is not captured again silently: its replica missed
	// changes meanwhile.
	_, errOut, code = cli(t, "", "-c", cfg, "add-table", "orders")
	if code != 1 || !strings.Contains(errOut, "capture of these tables was removed: their replicas need a new copy: public.orders; copy it again with pgreplica add-table --sync public.orders, or accept the difference with --no-sync") {
		t.Fatalf("add-table of a removed table: %d %q", code, errOut)
	}
	out, _, code = cli(t, "", "-c", cfg, "add-table", "--no-sync", `"Line Items"`, "orders")
	if code != 0 || out != "trigger on public.\"Line Items\" is current (order_id,n)\ncreated trigger on public.orders (id)\n" {
		t.Fatalf("add-table: %d %q", code, out)
	}

	// Destructive commands ask; without a terminal and without --yes they refuse.
	_, errOut, code = cli(t, "", "-c", cfg, "uninstall")
	if code != exitUsage || !strings.Contains(errOut, "refusing without --yes") {
		t.Fatalf("uninstall without --yes: code %d, %q", code, errOut)
	}
	if _, _, code = cli(t, "", "-c", cfg, "uninstall", "--yes"); code != 0 {
		t.Fatalf("uninstall --yes: code %d", code)
	}
	for _, d := range []string{origin, replica} {
		if left := queryText(t, d, pgreplicaObjects); left != "" {
			t.Fatalf("uninstall left %s", left)
		}
	}
	if rows := queryText(t, origin, "SELECT string_agg(format('%s', o), ',' ORDER BY id) FROM orders o"); rows != "(1,a),(2,b)" {
		t.Fatalf("uninstall changed orders: %s", rows)
	}
}

func TestCLIBadInputIsOneClearLineAndChangesNothing(t *testing.T) {
	p := shared.Get(t)
	cfgOK, origin, replica := dbs(t, "CREATE TABLE t (id int PRIMARY KEY)")
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	wrongPW := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s password=not-it sslmode=disable",
		p.Origin.Port, pgtest.PasswordUser)
	cases := []struct {
		name   string
		config string
		setup  string // SQL run on the replica first
		want   string
	}{
		{"invalid yaml", "name: shop\norigin: [dsn\n", "",
			"Error: %s:1: invalid YAML: did not find expected ',' or ']'"},
		{"unknown key", "name: shop\norigin:\n  dsn: x\nreplcas: []\n", "",
			`Error: %s:4: unknown key "replcas"`},
		{"unreachable", fmt.Sprintf("origin:\n  dsn: \"host=127.0.0.1 port=%d dbname=x sslmode=disable connect_timeout=2\"\n", port), "",
			fmt.Sprintf("Error: connect to origin (%s@127.0.0.1:%d/x): dial error: dial tcp 127.0.0.1:%d: connect: connection refused", defaultUser(t), port, port)},
		{"wrong password", fmt.Sprintf("origin:\n  dsn: %q\n", wrongPW), "",
			fmt.Sprintf(`Error: connect to origin (%s@127.0.0.1:%d/postgres): password authentication failed for user "%s" (SQLSTATE 28P01)`,
				pgtest.PasswordUser, p.Origin.Port, pgtest.PasswordUser)},
		{"replica lacks table", "", "DROP TABLE t",
			"Error: replica r1 lacks table public.t; create it there (pgreplica sync --schema) or exclude it under tables.exclude"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := cfgOK
			if c.config != "" {
				path = writeConfig(t, c.config)
			}
			if c.setup != "" {
				execSQL(t, replica, c.setup)
			}
			out, errOut, code := cli(t, "", "-c", path, "install")
			want := c.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, path)
			}
			if code != exitErr || out != "" || strings.TrimSpace(errOut) != want {
				t.Fatalf("code %d, stdout %q\nstderr:\n%s\nwant:\n%s", code, out, errOut, want)
			}
			if strings.Contains(errOut, "not-it") {
				t.Fatal("the password was printed")
			}
			for _, d := range []string{origin, replica} {
				if left := queryText(t, d, pgreplicaObjects); left != "" {
					t.Fatalf("a failed install left %s", left)
				}
			}
		})
	}
}

// defaultUser is the user libpq would connect as without user=.
func defaultUser(t *testing.T) string {
	cfg, err := pgx.ParseConfig("host=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.User
}

func TestCLIUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"install", "--nope"}, {"add-table"}, {"--replica", "x", "tables"}} {
		_, errOut, code := cli(t, "", args...)
		if code != exitUsage || !strings.HasPrefix(errOut, "Error: ") {
			t.Errorf("%v: code %d, stderr %q", args, code, errOut)
		}
	}
}
