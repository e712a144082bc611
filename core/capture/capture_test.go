package capture_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pgtest"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

// The shared test helpers (core/pgtest), under this package's short names.
var (
	connect = pgtest.Connect
	exec    = pgtest.Exec
)

const schema = `
CREATE TABLE single (id int PRIMARY KEY, v text);
CREATE TABLE composite (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE nokey (x int);
CREATE TABLE gen (id int PRIMARY KEY, price numeric, total numeric GENERATED ALWAYS AS (price * 2) STORED,
                  ident int GENERATED ALWAYS AS IDENTITY);
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."Order ""Lines""" ("select" int, "Ünïcode" text, "from" text, PRIMARY KEY ("select", "Ünïcode"));`

func setup(t *testing.T) (ctx context.Context, cfg *config.Config, origin, replica *pgx.Conn) {
	t.Helper()
	p := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	o, r := p.DBs(t)
	cfg, err := config.FromFlags("shop", o, []string{r})
	if err != nil {
		t.Fatal(err)
	}
	origin, replica = connect(t, o), connect(t, r)
	exec(t, origin, schema)
	exec(t, replica, schema)
	return ctx, cfg, origin, replica
}

func strs(t *testing.T, c *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func install(t *testing.T, ctx context.Context, cfg *config.Config) []string {
	t.Helper()
	var lines []string
	if err := capture.Install(ctx, cfg, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatalf("install: %v", err)
	}
	return lines
}

// The catalog rows pgreplica owns, with their xmin: a re-run that changes
// nothing leaves them exactly as they were.
const catalogState = `
SELECT format('%s %s', tgname, xmin) FROM pg_trigger WHERE tgname LIKE 'pgreplica%'
UNION ALL SELECT format('%s %s', proname, xmin) FROM pg_proc WHERE pronamespace = 'pgreplica'::regnamespace
UNION ALL SELECT format('%s %s', relname, xmin) FROM pg_class WHERE relnamespace = 'pgreplica'::regnamespace
UNION ALL SELECT format('meta %s %s', key, xmin) FROM pgreplica.meta
ORDER BY 1`

func TestInstallTablesReinstallUninstall(t *testing.T) {
	ctx, cfg, origin, replica := setup(t)
	exec(t, origin, `INSERT INTO single VALUES (1, 'a'); INSERT INTO gen (id, price) VALUES (1, 2.5);
	                 INSERT INTO "Sales Dept"."Order ""Lines""" VALUES (1, 'ü', 'x')`)
	before := strs(t, origin, `SELECT format('%s', t) FROM single t UNION ALL SELECT format('%s', g) FROM gen g
	                           UNION ALL SELECT format('%s', o) FROM "Sales Dept"."Order ""Lines""" o ORDER BY 1`)

	got := install(t, ctx, cfg)
	want := []string{
		"origin: installed capture schema (version 3)",
		`created trigger on "Sales Dept"."Order ""Lines""" (select,Ünïcode)`,
		"created trigger on public.composite (a,b)",
		"created trigger on public.gen (id)",
		"public.nokey has no primary key: not replicated",
		"created trigger on public.single (id)",
		"replica replica: installed bookkeeping schema (version 3), replicating from now on",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("install printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	tables, err := capture.ListTables(ctx, origin, cfg.Tables.Match)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, ti := range tables {
		lines = append(lines, ti.Table.String()+" "+strings.Join(ti.Key, ",")+" "+string(ti.Status))
	}
	wantTables := []string{
		`"Sales Dept"."Order ""Lines""" select,Ünïcode installed`,
		"public.composite a,b installed",
		"public.gen id installed",
		"public.nokey  no primary key",
		"public.single id installed",
	}
	if strings.Join(lines, "\n") != strings.Join(wantTables, "\n") {
		t.Fatalf("tables:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantTables, "\n"))
	}
	exec(t, origin, "ALTER TABLE single DISABLE TRIGGER pgreplica_capture")
	tables, _ = capture.ListTables(ctx, origin, cfg.Tables.Match)
	if tables[4].Status != capture.Disabled {
		t.Fatalf("disabled trigger shows as %q", tables[3].Status)
	}
	exec(t, origin, "ALTER TABLE single ENABLE TRIGGER pgreplica_capture")

	// Re-running changes nothing.
	catalog := strs(t, origin, catalogState)
	again := install(t, ctx, cfg)
	wantAgain := []string{
		"origin: capture schema is current (version 3)",
		`trigger on "Sales Dept"."Order ""Lines""" is current (select,Ünïcode)`,
		"trigger on public.composite is current (a,b)",
		"trigger on public.gen is current (id)",
		"public.nokey has no primary key: not replicated",
		"trigger on public.single is current (id)",
		"replica replica: bookkeeping schema is current (version 3)",
	}
	if strings.Join(again, "\n") != strings.Join(wantAgain, "\n") {
		t.Fatalf("re-install printed:\n%s", strings.Join(again, "\n"))
	}
	if after := strs(t, origin, catalogState); strings.Join(after, "\n") != strings.Join(catalog, "\n") {
		t.Fatalf("re-install changed the catalog:\nbefore %v\nafter  %v", catalog, after)
	}

	// A changed key is picked up at once by the event trigger, in the
	// ALTER TABLE's own transaction (so install finds it current).
	exec(t, origin, "ALTER TABLE single DROP CONSTRAINT single_pkey; ALTER TABLE single ADD PRIMARY KEY (id, v)")
	if l := install(t, ctx, cfg); l[5] != "trigger on public.single is current (id,v)" {
		t.Fatalf("after a key change: %q", l[5])
	}
	// Without the event trigger, the next install picks it up.
	exec(t, origin, "DROP EVENT TRIGGER pgreplica_ddl; ALTER TABLE single DROP CONSTRAINT single_pkey; ALTER TABLE single ADD PRIMARY KEY (v, id)")
	if l := install(t, ctx, cfg); l[5] != "updated trigger on public.single (v,id)" {
		t.Fatalf("after a key change without the event trigger: %q", l[5])
	}

	var uninstall []string
	if err := capture.Uninstall(ctx, cfg, func(l string) { uninstall = append(uninstall, l) }); err != nil {
		t.Fatal(err)
	}
	if uninstall[len(uninstall)-1] != "replica replica: removed schema pgreplica" {
		t.Fatalf("uninstall printed %v", uninstall)
	}
	after := strs(t, origin, `SELECT format('%s', t) FROM single t UNION ALL SELECT format('%s', g) FROM gen g
	                          UNION ALL SELECT format('%s', o) FROM "Sales Dept"."Order ""Lines""" o ORDER BY 1`)
	if strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("uninstall changed application rows:\n%v\n%v", before, after)
	}
	for _, c := range []*pgx.Conn{origin, replica} {
		if left := strs(t, c, `SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'pgreplica%'
		                       UNION ALL SELECT nspname::text FROM pg_namespace WHERE nspname = 'pgreplica'`); len(left) != 0 {
			t.Fatalf("uninstall left %v", left)
		}
	}
}

func TestReplicaLackingACapturedTableChangesNothing(t *testing.T) {
	ctx, cfg, origin, replica := setup(t)
	exec(t, replica, "DROP TABLE composite; ALTER TABLE single DROP COLUMN v")
	err := capture.Install(ctx, cfg, func(string) {})
	want := "replica replica lacks table public.composite; create it there (pgreplica sync --schema) or exclude it under tables.exclude\n" +
		"replica replica: table public.single lacks column v"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	for _, c := range []*pgx.Conn{origin, replica} {
		if left := strs(t, c, `SELECT nspname::text FROM pg_namespace WHERE nspname = 'pgreplica'
		                       UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE 'pgreplica%'`); len(left) != 0 {
			t.Fatalf("a failed install left %v", left)
		}
	}
}

type logged struct{ op, key, data string }

func events(t *testing.T, c *pgx.Conn) []logged {
	t.Helper()
	rows, err := c.Query(context.Background(),
		`SELECT op::text, coalesce(key::text, ''), coalesce(data::text, '') FROM pgreplica.log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (logged, error) {
		var l logged
		return l, r.Scan(&l.op, &l.key, &l.data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryDMLKindWritesTheRightEvents(t *testing.T) {
	ctx, cfg, origin, _ := setup(t)
	install(t, ctx, cfg)
	exec(t, origin, `
INSERT INTO composite VALUES (1, 'k', 'v1');
UPDATE composite SET v = 'v2' WHERE a = 1;              -- some columns
UPDATE composite SET b = 'k2' WHERE a = 1;              -- the key
UPDATE composite SET v = v WHERE a = 1;                 -- nothing: no event
DELETE FROM composite WHERE a = 1;
INSERT INTO gen (id, price) VALUES (1, 1.50);
UPDATE gen SET price = 1.500 WHERE id = 1;              -- same value, other scale
TRUNCATE single;`)
	exec(t, origin, "BEGIN")
	exec(t, origin, "INSERT INTO single VALUES (99, 'rolled back')")
	exec(t, origin, "ROLLBACK")
	got := events(t, origin)
	want := []logged{
		{"I", "", `{"a": 1, "b": "k", "v": "v1"}`},
		{"U", `{"a": 1, "b": "k"}`, `{"v": "v2"}`},
		{"U", `{"a": 1, "b": "k"}`, `{"b": "k2"}`},
		{"D", `{"a": 1, "b": "k2"}`, ""},
		{"I", "", `{"id": 1, "ident": 1, "price": 1.50}`},
		{"U", `{"id": 1}`, `{"price": 1.500}`},
		{"T", "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
	// Every event carries its writer's transaction and a capture time.
	if n := strs(t, origin, `SELECT count(*)::text FROM pgreplica.log WHERE txid IS NULL OR at IS NULL OR at > clock_timestamp()`); n[0] != "0" {
		t.Fatalf("%s events lack txid or time", n[0])
	}
}

func TestValuesAreStoredExactly(t *testing.T) {
	ctx, cfg, origin, replica := setup(t)
	for _, c := range []*pgx.Conn{origin, replica} {
		exec(t, c, "CREATE TABLE vals (id int PRIMARY KEY, f float8, j jsonb, js json, iv interval, ts timestamptz, n numeric)")
	}
	install(t, ctx, cfg)
	exec(t, origin, `SET extra_float_digits = -10; SET IntervalStyle = sql_standard; SET DateStyle = 'SQL, DMY';
INSERT INTO vals VALUES (1, '-0', 'null', '{"b":1,  "a":2}', '-1 day +02:03', '2026-01-02 03:04:05.678+05:30', 1.10),
                        (2, 0.1, NULL, NULL, NULL, NULL, NULL)`)
	got := events(t, origin)
	want := []string{
		`{"f": "-0", "j": "null", "n": 1.10, "id": 1, "iv": "-1 days +02:03:00", "js": "{\"b\":1,  \"a\":2}", "ts": "2026-01-01T13:34:05.678-08:00"}`,
		`{"f": "0.1", "j": null, "n": null, "id": 2, "iv": null, "js": null, "ts": null}`,
	}
	for i, w := range want {
		if got[i].data != w {
			t.Errorf("row %d stored as\n%s\nwant\n%s", i+1, got[i].data, w)
		}
	}
}

func TestOneNotificationPerTransaction(t *testing.T) {
	ctx, cfg, origin, _ := setup(t)
	install(t, ctx, cfg)
	listener := connect(t, cfg.Origin.DSN)
	exec(t, listener, "LISTEN pgreplica")
	exec(t, origin, "INSERT INTO single SELECT g, 'x' FROM generate_series(1, 500) g")
	exec(t, origin, "BEGIN; UPDATE single SET v = 'y' WHERE id < 100; DELETE FROM single WHERE id > 400; COMMIT")
	count := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			break
		}
		count++
	}
	if count != 2 {
		t.Fatalf("2 transactions of 500 and 199 rows sent %d notifications, want 2", count)
	}
}

// Application roles write captured tables without any grant on the log,
// and cannot read it or forge events in it.
func TestWritersNeedNoGrantAndCannotForgeEvents(t *testing.T) {
	ctx, cfg, origin, _ := setup(t)
	install(t, ctx, cfg)
	role := "app_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	exec(t, origin, "CREATE ROLE "+role+"; GRANT INSERT, UPDATE, DELETE, SELECT ON single TO "+role)
	t.Cleanup(func() {
		exec(t, origin, "REASSIGN OWNED BY "+role+" TO CURRENT_USER; DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	exec(t, origin, "SET ROLE "+role)
	exec(t, origin, "INSERT INTO single VALUES (1, 'by app'); UPDATE single SET v = 'again' WHERE id = 1")
	for _, forge := range []string{
		"SELECT count(*) FROM pgreplica.log",
		"INSERT INTO pgreplica.log_0 (id, schema_name, table_name, op) VALUES (1, 'public', 'single', 'D')",
	} {
		if _, err := origin.Exec(ctx, forge); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("%s: %v, want permission denied", forge, err)
		}
	}
	exec(t, origin, "RESET ROLE")
	if got := events(t, origin); len(got) != 2 || got[0].op != "I" || got[1].op != "U" {
		t.Fatalf("events = %+v", got)
	}
}

// Installing while an application transaction writes several of the
// tables does not deadlock with it: the transaction holds "single", install
// starts, then the transaction writes "composite" (which install, working
// in name order, reaches first). In one install transaction that is a
// deadlock; table by table it is a short wait.
func TestInstallWhileTheOriginIsBusy(t *testing.T) {
	ctx, cfg, origin, _ := setup(t)
	exec(t, origin, "INSERT INTO single VALUES (1, 'x'); INSERT INTO composite VALUES (1, 'k', 'x')")
	app := connect(t, cfg.Origin.DSN)
	exec(t, app, "BEGIN")
	exec(t, app, "UPDATE single SET v = 'y' WHERE id = 1")
	done := make(chan error, 1)
	go func() { done <- capture.Install(ctx, cfg, func(string) {}) }()
	time.Sleep(500 * time.Millisecond)
	if _, err := app.Exec(ctx, "UPDATE composite SET v = 'y' WHERE a = 1"); err != nil {
		t.Fatalf("the application's transaction failed: %v", err)
	}
	exec(t, app, "COMMIT")
	if err := <-done; err != nil {
		t.Fatalf("install under load: %v", err)
	}
	tables, err := capture.ListTables(ctx, origin, cfg.Tables.Match)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range tables {
		if ti.Key != nil && ti.Status != capture.Installed {
			t.Fatalf("%s is %s after install", ti.Table, ti.Status)
		}
	}
}

// skip_roles: writes by a listed role (logged in as it, or after SET ROLE)
// are not captured, row changes or TRUNCATE; the list is compiled into the
// capture function (no lookup per row), and a reinstall with another list
// makes the function again.
func TestSkipRolesAreNotCaptured(t *testing.T) {
	ctx, cfg, origin, _ := setup(t)
	role := "loader_" + strings.ToLower(t.Name())
	exec(t, origin, "CREATE ROLE "+role+"; GRANT INSERT, UPDATE, DELETE, SELECT, TRUNCATE ON single TO "+role)
	t.Cleanup(func() {
		exec(t, origin, "RESET ROLE; REASSIGN OWNED BY "+role+" TO CURRENT_USER; DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	cfg.SkipRoles = []string{role, "nobody_else"}
	lines := install(t, ctx, cfg)
	if want := "origin: writes by " + role + ", nobody_else are not captured (skip_roles)"; !slices.Contains(lines, want) {
		t.Fatalf("install printed %q, want the line %q", lines, want)
	}
	src := strs(t, origin, `SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(pgreplica.capture_function('single'::regclass) || '()')`)
	if !strings.Contains(src[0], "'{"+role+",nobody_else}'") {
		t.Fatalf("the capture function does not hold the role list as a literal:\n%s", src[0])
	}
	exec(t, origin, "SET ROLE "+role)
	exec(t, origin, "INSERT INTO single VALUES (1, 'loaded'), (2, 'loaded'); UPDATE single SET v = 'x' WHERE id = 1; DELETE FROM single WHERE id = 2")
	exec(t, origin, "TRUNCATE single")
	exec(t, origin, "RESET ROLE")
	exec(t, origin, "INSERT INTO single VALUES (3, 'by the owner')")
	if got := events(t, origin); len(got) != 1 || got[0].op != "I" || got[0].data != `{"v": "by the owner", "id": 3}` {
		t.Fatalf("events = %+v, want only the owner's insert", got)
	}

	// Without the list, the role's writes are captured again.
	cfg.SkipRoles = nil
	install(t, ctx, cfg)
	exec(t, origin, "SET ROLE "+role)
	exec(t, origin, "INSERT INTO single VALUES (4, 'loaded')")
	exec(t, origin, "RESET ROLE")
	if got := events(t, origin); len(got) != 2 || got[1].data != `{"v": "loaded", "id": 4}` {
		t.Fatalf("events = %+v, want the role's insert captured", got)
	}
}
