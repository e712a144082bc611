package replay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
)

// Every PL/pgSQL reserved word (pl_reserved_kwlist.h) and a selection of
// SQL reserved words, as column names. quote_ident leaves the PL/pgSQL-only
// ones bare, and NEW.begin does not compile: capture must quote always.
var reservedWords = []string{
	"all", "begin", "by", "case", "declare", "else", "end", "execute", "for", "foreach",
	"from", "if", "in", "into", "loop", "not", "null", "or", "strict", "then", "to",
	"using", "when", "while",
	"select", "where", "group", "order", "user", "table", "column", "check", "default",
	"limit", "offset", "returning", "window", "constraint", "primary", "references",
}

func reservedSchema() string {
	var b strings.Builder
	b.WriteString(`CREATE TABLE calendar ("id" int PRIMARY KEY`)
	for _, w := range reservedWords {
		fmt.Fprintf(&b, `, %s text`, pgx.Identifier{w}.Sanitize())
	}
	b.WriteString(`, "Mixed Case" float8, "quo""te" numeric);`)
	return b.String()
}

func TestReservedWordColumnsReplicate(t *testing.T) {
	modes(t, func(t *testing.T, mode replay.ApplyMode) {
		e := newEnv(t, reservedSchema(), 1)
		e.mode = mode
		cols := make([]string, len(reservedWords))
		vals := make([]string, len(reservedWords))
		for i, w := range reservedWords {
			cols[i] = pgx.Identifier{w}.Sanitize()
			vals[i] = fmt.Sprintf("'%s-' || g", w)
		}
		exec(t, e.origin, fmt.Sprintf(`INSERT INTO calendar (id, %s, "Mixed Case", "quo""te")
		    SELECT g, %s, g / 3.0, g * 1.10 FROM generate_series(1, 50) g`,
			strings.Join(cols, ", "), strings.Join(vals, ", ")))
		exec(t, e.origin, `UPDATE calendar SET "begin" = 'b2', "strict" = NULL, "Mixed Case" = '-0' WHERE id % 2 = 0`)
		exec(t, e.origin, `UPDATE calendar SET "loop" = 'l3', "quo""te" = 1.100 WHERE id % 3 = 0`)
		exec(t, e.origin, `DELETE FROM calendar WHERE id % 5 = 0`)
		e.once()
		e.requireEqual(0, "calendar")
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM calendar WHERE "begin" = 'b2'`); n != 20 {
			t.Fatalf("replica has %d rows with begin = b2, want 20", n)
		}
	})
}

// writer runs an application-like write load on table t (INSERT, UPDATE,
// DELETE of its own rows, columns id and v) until stopped, counting the
// statements that failed.
type writer struct {
	failed atomic.Int64
	ok     atomic.Int64
	errs   chan error
	stop   chan struct{}
	done   sync.WaitGroup
}

func startWriter(t *testing.T, dsn, table string, from int) *writer {
	t.Helper()
	w := &writer{errs: make(chan error, 100), stop: make(chan struct{})}
	c := connect(t, dsn)
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		ctx := context.Background()
		for i := from; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			for _, q := range []string{
				fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, 'w%d')", table, i, i),
				fmt.Sprintf("UPDATE %s SET v = v || '+' WHERE id = %d", table, i-1),
				fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, i-7),
			} {
				if _, err := c.Exec(ctx, q); err != nil {
					w.failed.Add(1)
					select {
					case w.errs <- fmt.Errorf("%s: %w", q, err):
					default:
					}
				} else {
					w.ok.Add(1)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// finish stops the writer and fails the test if any statement failed.
func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.done.Wait()
	if n := w.failed.Load(); n > 0 {
		t.Fatalf("%d application statements failed, first: %v", n, <-w.errs)
	}
	if w.ok.Load() == 0 {
		t.Fatal("the writer wrote nothing")
	}
}

func originDSN(e *env) string { return e.cfg.Origin.DSN }

// tableStatus is the capture status that pgreplica tables shows for t.
func tableStatus(t *testing.T, e *env, table string) capture.Status {
	t.Helper()
	infos, err := capture.ListTables(e.ctx, e.origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range infos {
		if ti.Table.String() == table {
			return ti.Status
		}
	}
	t.Fatalf("no table %s in %v", table, infos)
	return ""
}

// Each kind of ALTER TABLE, done with plain SQL on the origin while an
// application writes to the table: no application statement ever fails, and
// the replica ends equal once it has the same change. With the event
// trigger capture follows at once; without it the table shows as stale, its
// changes are still captured, and install makes it current again.
func TestAlterTableUnderLoadNeverFailsWrites(t *testing.T) {
	type step struct {
		name            string
		origin, replica string // DDL; the replica's runs before the origin's when first
		replicaFirst    bool
	}
	steps := []step{
		{"add column", "ALTER TABLE acct ADD COLUMN note text", "ALTER TABLE acct ADD COLUMN note text", true},
		{"add column with default", "ALTER TABLE acct ADD COLUMN n2 int NOT NULL DEFAULT 7", "ALTER TABLE acct ADD COLUMN n2 int NOT NULL DEFAULT 7", true},
		{"alter column type", "ALTER TABLE acct ALTER COLUMN amount TYPE float8", "ALTER TABLE acct ALTER COLUMN amount TYPE float8", true},
		{"drop column", "ALTER TABLE acct DROP COLUMN extra", "ALTER TABLE acct DROP COLUMN extra", false},
		{"rename column", "ALTER TABLE acct RENAME COLUMN label TO \"begin\"", "", false},
	}
	for _, variant := range []string{"event trigger", "no event trigger", "ddl.capture"} {
		withTrigger, follows := variant != "no event trigger", variant == "ddl.capture"
		t.Run(variant, func(t *testing.T) {
			e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text, amount numeric(12,2) DEFAULT 1.50,
			                                   extra text DEFAULT 'x', label text DEFAULT 'l')`, 1)
			if !withTrigger {
				exec(t, e.origin, "DROP EVENT TRIGGER pgreplica_ddl")
			}
			if follows {
				// the replica follows by itself: every change travels in the log
				e.cfg.DDL.Capture = true
				if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
					t.Fatal(err)
				}
			}
			next := 1
			for _, s := range steps {
				if s.replicaFirst && !follows {
					exec(t, e.replicas[0], s.replica)
				}
				w := startWriter(t, originDSN(e), "acct", next)
				time.Sleep(50 * time.Millisecond)
				exec(t, e.origin, s.origin)
				time.Sleep(50 * time.Millisecond)
				w.finish(t)
				next += 100000
				want := capture.Installed
				if !withTrigger {
					want = capture.Stale
				}
				if got := tableStatus(t, e, "public.acct"); got != want {
					t.Fatalf("%s: tables says %q, want %q", s.name, got, want)
				}
				if s.name == "rename column" && !follows {
					// Events after the rename carry the new name: the
					// replica needs the rename between the old and new
					// events (pgreplica execute); here only capture is checked.
					if n := queryInt(t, e.origin, `SELECT count(*) FROM pgreplica.log WHERE data ? 'begin'`); n == 0 {
						t.Fatal("no event carries the renamed column")
					}
					continue
				}
				e.once()
				if !s.replicaFirst && !follows {
					exec(t, e.replicas[0], s.replica)
				}
				e.requireEqual(0, "acct")
				if !withTrigger {
					install := capture.Install(e.ctx, e.cfg, func(string) {})
					if install != nil {
						t.Fatal(install)
					}
					if got := tableStatus(t, e, "public.acct"); got != capture.Installed {
						t.Fatalf("%s: after install tables says %q", s.name, got)
					}
					exec(t, e.origin, "DROP EVENT TRIGGER pgreplica_ddl") // install made it again
				}
			}
		})
	}
}

// A partitioned table (pagila's payment shape, 7 partitions) is one
// captured table: events of partitions carry its name, a row moved between
// partitions replicates, TRUNCATE of one partition is captured, and a
// partition created later is covered.
func TestPartitionedTableReplicatesAsOne(t *testing.T) {
	var b strings.Builder
	b.WriteString(`CREATE TABLE payment (payment_id int NOT NULL, customer int, amount numeric(5,2), payment_date date NOT NULL,
	                 PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);`)
	for m := 1; m <= 7; m++ {
		fmt.Fprintf(&b, "CREATE TABLE payment_p2022_%02d PARTITION OF payment FOR VALUES FROM ('2022-%02d-01') TO ('2022-%02d-01');\n", m, m, m+1)
	}
	modes(t, func(t *testing.T, mode replay.ApplyMode) {
		e := newEnv(t, b.String(), 1)
		e.mode = mode
		exec(t, e.origin, `INSERT INTO payment SELECT g, g % 10, g / 7.0, date '2022-01-01' + (g % 200) FROM generate_series(1, 700) g`)
		exec(t, e.origin, `UPDATE payment SET payment_date = '2022-07-15' WHERE payment_id = 3`) // moves partition
		exec(t, e.origin, `UPDATE payment SET amount = amount + 1 WHERE customer = 4`)
		if n := queryInt(t, e.origin, `SELECT count(*) FROM pgreplica.log WHERE table_name <> 'payment'`); n != 0 {
			t.Fatalf("%d row events carry a partition's name", n)
		}
		e.once()
		e.requireEqual(0, "payment", "payment_p2022_01", "payment_p2022_07")
		exec(t, e.origin, `TRUNCATE payment_p2022_02`)
		exec(t, e.origin, `DELETE FROM payment WHERE payment_id = 10`)
		e.once()
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM payment_p2022_02`); n != 0 {
			t.Fatalf("replica's truncated partition has %d rows", n)
		}
		e.requireEqual(0, "payment", "payment_p2022_02")
		// A partition created later is captured, TRUNCATE included.
		exec(t, e.replicas[0], `CREATE TABLE payment_p2022_08 PARTITION OF payment FOR VALUES FROM ('2022-08-01') TO ('2022-09-01')`)
		exec(t, e.origin, `CREATE TABLE payment_p2022_08 PARTITION OF payment FOR VALUES FROM ('2022-08-01') TO ('2022-09-01')`)
		if got := tableStatus(t, e, "public.payment"); got != capture.Installed {
			t.Fatalf("after a new partition tables says %q", got)
		}
		exec(t, e.origin, `INSERT INTO payment VALUES (9001, 1, 1, '2022-08-02'), (9002, 1, 1, '2022-08-03')`)
		e.once()
		exec(t, e.origin, `TRUNCATE payment_p2022_08`)
		e.once()
		e.requireEqual(0, "payment", "payment_p2022_08")
	})
}

// An application role cannot switch capture off or forge the origin tag
// by setting pgreplica's settings: its writes are captured with the true
// (empty) origin, notified, and replicated.
func TestApplicationCannotSwitchCaptureOff(t *testing.T) {
	e := newEnv(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`, 1)
	exec(t, e.origin, `DO $$ BEGIN
	    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_writer') THEN
	        CREATE ROLE app_writer LOGIN PASSWORD 'app';
	    END IF; END $$`)
	exec(t, e.origin, `GRANT ALL ON item TO app_writer`)
	cfg, err := pgx.ParseConfig(e.cfg.Origin.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = "app_writer", "app"
	app, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	listener := connect(t, e.cfg.Origin.DSN)
	exec(t, listener, "LISTEN pgreplica")

	exec(t, app, `SET pgreplica.origin = 'forged'`)
	exec(t, app, `INSERT INTO item VALUES (1, 'a'), (2, 'b')`)
	exec(t, app, `SET pgreplica.cascade = 'on'`)
	exec(t, app, `UPDATE item SET v = 'c' WHERE id = 2`)
	exec(t, app, `SET pgreplica.token = 'guess'`)
	exec(t, app, `BEGIN; SELECT set_config('pgreplica.notified', '1', true); DELETE FROM item WHERE id = 1; COMMIT`)

	var n, forged int64
	if err := e.origin.QueryRow(e.ctx, `SELECT count(*), count(origin) FROM pgreplica.log`).Scan(&n, &forged); err != nil {
		t.Fatal(err)
	}
	if n != 4 || forged != 0 {
		t.Fatalf("log holds %d events (want 4), %d with an origin tag (want 0)", n, forged)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ { // one per transaction
		if _, err := listener.WaitForNotification(ctx); err != nil {
			t.Fatalf("notification %d: %v", i+1, err)
		}
	}
	e.once()
	e.requireEqual(0, "item")
}

// remove-table, a write, then a routine install: the table is refused, not
// silently captured again, and shows as needing a re-copy; add-table
// --no-sync (Recapture) takes it back.
func TestRemovedTableIsNotSilentlyCapturedAgain(t *testing.T) {
	e := newEnv(t, `CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE gone (id int PRIMARY KEY, v text)`, 1)
	gone := pg.Table{Schema: "public", Name: "gone"}
	if err := capture.RemoveTables(e.ctx, e.cfg, []pg.Table{gone}, func(string) {}); err != nil {
		t.Fatal(err)
	}
	exec(t, e.origin, `INSERT INTO gone VALUES (1, 'missed')`)
	var lines []string
	err := capture.Install(e.ctx, e.cfg, func(l string) { lines = append(lines, l) })
	if !errors.Is(err, capture.ErrRemoved) {
		t.Fatalf("install after remove-table: %v, want ErrRemoved", err)
	}
	want := "capture of these tables was removed: their replicas need a new copy: public.gone; copy them again with pgreplica add-table --sync public.gone, or accept the difference with --no-sync"
	if err.Error() != want {
		t.Fatalf("install error:\n%s\nwant\n%s", err, want)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "public.gone: capture was removed earlier; not captured again without a new copy") {
		t.Fatalf("install printed %v", lines)
	}
	if got := tableStatus(t, e, "public.gone"); got != capture.Removed {
		t.Fatalf("tables says %q for the removed table", got)
	}
	exec(t, e.origin, `INSERT INTO gone VALUES (2, 'still not captured')`)
	if n := queryInt(t, e.origin, `SELECT count(*) FROM pgreplica.log WHERE table_name = 'gone'`); n != 0 {
		t.Fatalf("%d events of the removed table", n)
	}
	if err := capture.AddTables(e.ctx, e.cfg, []pg.Table{gone}, func(string) {}); !errors.Is(err, capture.ErrRemoved) {
		t.Fatalf("add-table without --sync/--no-sync: %v", err)
	}
	if err := capture.AddTablesWith(e.ctx, e.cfg, []pg.Table{gone}, capture.Options{Recapture: true}, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if got := tableStatus(t, e, "public.gone"); got != capture.Installed {
		t.Fatalf("after add-table --no-sync tables says %q", got)
	}
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		t.Fatalf("install after recapture: %v", err)
	}
}

// A table without a primary key but with a unique index on NOT NULL
// columns is replicated by that index (Slony-I's rule); a unique index on a
// nullable column is no key.
func TestUniqueIndexServesAsKey(t *testing.T) {
	modes(t, func(t *testing.T, mode replay.ApplyMode) {
		e := newEnv(t, `CREATE TABLE uk (code text NOT NULL, region int NOT NULL, v text, n int UNIQUE);
		                CREATE UNIQUE INDEX uk_wide ON uk (code, region, v);
		                CREATE UNIQUE INDEX uk_key ON uk (region, code);
		                CREATE TABLE weak (code text UNIQUE, v text)`, 1)
		e.mode = mode
		infos, err := capture.ListTables(e.ctx, e.origin, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ti := range infos {
			got = append(got, fmt.Sprintf("%s %v %v %s", ti.Table, ti.Key, ti.KeyIsUnique, ti.Status))
		}
		want := "public.uk [region code] true installed\npublic.weak [] false no primary key"
		if strings.Join(got, "\n") != want {
			t.Fatalf("tables:\n%s\nwant\n%s", strings.Join(got, "\n"), want)
		}
		exec(t, e.origin, `INSERT INTO uk SELECT 'c' || g, g % 3, 'v', g FROM generate_series(1, 30) g`)
		exec(t, e.origin, `UPDATE uk SET v = 'w', code = code || 'x' WHERE region = 1`)
		exec(t, e.origin, `DELETE FROM uk WHERE region = 2`)
		e.once()
		e.requireEqual(0, "uk")
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM uk WHERE code LIKE '%x' AND v = 'w'`); n != 10 {
			t.Fatalf("replica has %d updated rows, want 10", n)
		}
	})
}

// PostgreSQL's regression inheritance tree: TRUNCATE ONLY, UPDATE ONLY
// and DELETE ONLY on the parent leave the children on the replica as on
// the origin (apply names each table with ONLY), and so does a TRUNCATE of
// the whole tree.
func TestInheritanceChildrenUntouchedByParentChanges(t *testing.T) {
	schema := `
	CREATE TABLE person (id int PRIMARY KEY, name text, age int4, location point);
	CREATE TABLE emp (salary int4, manager name) INHERITS (person);
	ALTER TABLE emp ADD PRIMARY KEY (id);
	CREATE TABLE student (gpa float8) INHERITS (person);
	ALTER TABLE student ADD PRIMARY KEY (id);
	CREATE TABLE stud_emp (percent int4) INHERITS (emp, student);
	ALTER TABLE stud_emp ADD PRIMARY KEY (id);`
	fill := `
	INSERT INTO person VALUES (1, 'mike', 40, '(3.1,6.2)'), (2, 'joe', 20, '(1,2)'), (3, 'sam', 30, '(1,1)');
	INSERT INTO emp VALUES (1, 'sharon', 25, '(15,12)', 1000, 'sam'), (11, 'bill', 20, '(11,10)', 1000, 'sharon');
	INSERT INTO student VALUES (2, 'fred', 28, '(3.1,-1.5)', 3.70), (21, 'larry', 60, '(6,6)', 3.1);
	INSERT INTO stud_emp VALUES (3, 'jeff', 23, '(8,7.7)', 600, 'sharon', 3.50, 50);`
	tree := []string{"person", "emp", "student", "stud_emp"}
	modes(t, func(t *testing.T, mode replay.ApplyMode) {
		e := newEnv(t, schema, 1)
		e.mode = mode
		exec(t, e.origin, fill)
		e.once()
		e.requireOnlyEqual(tree...)
		// Same keys at several levels: ONLY on the replica is what keeps them apart.
		exec(t, e.origin, `UPDATE ONLY person SET age = age + 1 WHERE id IN (1, 2, 3)`)
		exec(t, e.origin, `DELETE FROM ONLY person WHERE id = 2`)
		exec(t, e.origin, `UPDATE emp SET salary = 2000 WHERE id = 1`) // emp and stud_emp rows with id 1: only emp's
		e.once()
		e.requireOnlyEqual(tree...)
		exec(t, e.origin, `TRUNCATE ONLY emp`)
		e.once()
		e.requireOnlyEqual(tree...)
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM ONLY stud_emp`); n != 1 {
			t.Fatalf("replica's stud_emp has %d rows after TRUNCATE ONLY emp, want 1", n)
		}
		exec(t, e.origin, `TRUNCATE person`)
		e.once()
		e.requireOnlyEqual(tree...)
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM person`); n != 0 {
			t.Fatalf("replica's tree has %d rows after TRUNCATE person, want 0", n)
		}
	})
}

// requireOnlyEqual compares each table's own rows (ONLY) between the origin
// and the first replica.
func (e *env) requireOnlyEqual(tables ...string) {
	e.t.Helper()
	for _, tb := range tables {
		q := fmt.Sprintf(`SELECT coalesce(string_agg(format('%%s', x), ';' ORDER BY x.id), '') FROM ONLY %s x`, tb)
		var o, r string
		if err := e.origin.QueryRow(e.ctx, q).Scan(&o); err != nil {
			e.t.Fatal(err)
		}
		if err := e.replicas[0].QueryRow(e.ctx, q).Scan(&r); err != nil {
			e.t.Fatal(err)
		}
		if o != r {
			e.t.Fatalf("ONLY %s differs:\norigin  %s\nreplica %s", tb, o, r)
		}
	}
}

// pgreplica execute under load: the script reaches the replica exactly
// between the changes before and after it (rows written right after it use
// the new column; applied a moment too early or too late, they would fail),
// with the engine streaming all along.
func TestExecuteRunsTheScriptInTheStream(t *testing.T) {
	e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text)`, 1)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.engine().Run(ctx) }()
	exec(t, e.origin, `INSERT INTO acct VALUES (-100, 'before')`)
	w := startWriter(t, originDSN(e), "acct", 1)
	time.Sleep(100 * time.Millisecond)
	var lines []string
	id, err := capture.Execute(e.ctx, e.cfg, "ALTER TABLE acct ADD COLUMN note text DEFAULT 'n';\nUPDATE acct SET note = 'filled'", func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("executed on the origin; every replica runs it as event %d, between the changes before and after it", id)
	if strings.Join(lines, "\n") != want {
		t.Fatalf("execute printed %q, want %q", lines, want)
	}
	exec(t, e.origin, `INSERT INTO acct (id, v, note) VALUES (-101, 'after', 'uses the new column')`)
	time.Sleep(100 * time.Millisecond)
	w.finish(t)
	cancel()
	<-done
	e.once()
	e.requireEqual(0, "acct")
	// The script's UPDATE ran on the replica itself, not as captured events.
	if n := queryInt(t, e.origin, `SELECT count(*) FROM pgreplica.log WHERE data ? 'note' AND data->>'note' = 'filled'`); n != 0 {
		t.Fatalf("%d events captured the script's own UPDATE", n)
	}
	if got := queryString(t, e.replicas[0], `SELECT note FROM acct WHERE id = -100`); got != "filled" {
		t.Fatalf("the replica's row -100 has note %q: it did not run the script's UPDATE", got)
	}
}

// A script that fails on the replica stops it with the statement and the
// server's message; skip moves past it (recorded in pgreplica.skipped),
// the rest applies, and reapply runs it once the operator fixed the cause.
func TestFailingScriptStopsThenSkipAndReapply(t *testing.T) {
	e := newEnv(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`, 1)
	exec(t, e.replicas[0], `CREATE INDEX item_v ON item (v)`) // the replica has it already
	exec(t, e.origin, `INSERT INTO item VALUES (1, 'a')`)
	id, err := capture.Execute(e.ctx, e.cfg, "CREATE INDEX item_v ON item (v)", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, e.origin, `INSERT INTO item VALUES (2, 'b')`)
	_, err = e.engine().Once(e.ctx)
	if !replay.IsStop(err) {
		t.Fatalf("once: %v, want a stop", err)
	}
	want := fmt.Sprintf(`replica replica: the script of event %d (pgreplica execute) failed: relation "item_v" already exists [SQLSTATE 42P07]; script: CREATE INDEX item_v ON item (v); fix the replica and retry, or move past it: pgreplica skip --replica replica --event %d`, id, id)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("stop error:\n%v\nwant it to contain\n%s", err, want)
	}
	if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM item`); n != 0 {
		t.Fatalf("the replica applied %d rows of the failed batch", n)
	}
	s, err := replay.ReadEvent(e.ctx, e.cfg, "replica", id)
	if err != nil {
		t.Fatal(err)
	}
	s.Reason, s.By = "index made by hand", "test"
	if err := replay.Skip(e.ctx, e.cfg, s); err != nil {
		t.Fatal(err)
	}
	e.once()
	e.requireEqual(0, "item")
	if got := queryString(t, e.replicas[0], `SELECT op::text || ' ' || reason || ' ' || skipped_by FROM pgreplica.skipped WHERE event_id = $1`, id); got != "E index made by hand test" {
		t.Fatalf("pgreplica.skipped holds %q", got)
	}
	// Skipping it again, or an applied event, is refused.
	if err := replay.Skip(e.ctx, e.cfg, s); err == nil || !strings.Contains(err.Error(), "replica replica has applied event") {
		t.Fatalf("skip of an event moved past: %v", err)
	}
	exec(t, e.replicas[0], `DROP INDEX item_v`)
	if _, err := replay.Reapply(e.ctx, e.cfg, "replica", id); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM pg_indexes WHERE indexname = 'item_v'`); n != 1 {
		t.Fatal("reapply did not run the script")
	}
	if _, err := replay.Reapply(e.ctx, e.cfg, "replica", id); err == nil || !strings.Contains(err.Error(), "was applied again already") {
		t.Fatalf("second reapply: %v", err)
	}
}

func queryString(t testing.TB, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// Sequences travel in the stream: after catching up, every sequence of a
// replicated table (serial, identity, a default's nextval) is on the
// replica at least where the origin's was when the last change was
// applied, and a sequence that is further on the replica is never moved
// back.
func TestSequencesFollowTheOrigin(t *testing.T) {
	e := newEnv(t, `CREATE SEQUENCE order_no START 1000;
	  CREATE TABLE orders (id serial PRIMARY KEY, ident bigint GENERATED BY DEFAULT AS IDENTITY, no bigint DEFAULT nextval('order_no'), v text)`, 1)
	seqs := []string{"orders_id_seq", "orders_ident_seq", "order_no"}
	last := func(c *pgx.Conn, seq string) int64 {
		return queryInt(t, c, `SELECT coalesce(pg_sequence_last_value($1::regclass), 0)`, seq)
	}
	for round := 1; round <= 3; round++ {
		exec(t, e.origin, `INSERT INTO orders (v) SELECT 'x' FROM generate_series(1, 25)`)
		exec(t, e.origin, `SELECT nextval('order_no')`) // used, then rolled away
		e.once()
		e.requireEqual(0, "orders")
		for _, s := range seqs {
			if o, r := last(e.origin, s), last(e.replicas[0], s); r < o {
				t.Fatalf("round %d: %s is at %d on the replica, %d on the origin", round, s, r, o)
			}
		}
	}
	// An INSERT on the replica relying on the defaults succeeds (what a
	// switchover needs).
	if id := queryInt(t, e.replicas[0], `INSERT INTO orders (v) VALUES ('after cut-over') RETURNING id`); id <= queryInt(t, e.origin, `SELECT max(id) FROM orders`) {
		t.Fatalf("the replica's next id %d is not beyond the origin's rows", id)
	}
	exec(t, e.replicas[0], `DELETE FROM orders WHERE v = 'after cut-over'; SELECT setval('order_no', 5000)`)
	exec(t, e.origin, `INSERT INTO orders (v) VALUES ('y')`)
	e.once()
	if r := last(e.replicas[0], "order_no"); r != 5000 {
		t.Fatalf("the replica's order_no moved back to %d", r)
	}
}

// records is a slog handler that keeps every record's message and table.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "table" {
			line += " table=" + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, line)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }
func (r *records) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// Without the event trigger, a table changed by plain ALTER TABLE is
// logged by the running engine as stale, once, and as current again after
// install.
func TestEngineLogsStaleCaptureOnce(t *testing.T) {
	e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text)`, 1)
	exec(t, e.origin, "DROP EVENT TRIGGER pgreplica_ddl")
	exec(t, e.origin, "ALTER TABLE acct ADD COLUMN note text")
	rec := &records{}
	eng := replay.New(e.cfg, slog.New(rec), replay.Options{})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	stale := "WARN capture is stale: the table changed since its capture was made; a column added since is not replicated: run pgreplica install table=public.acct"
	deadline := time.Now().Add(20 * time.Second)
	for rec.count(stale) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if rec.count(stale) != 1 {
		t.Fatalf("the engine logged %d stale lines, want 1: %v", rec.count(stale), rec.msgs)
	}
}

// A replica whose table no longer fits the events (the origin added a
// column the replica lacks) stops only that table's stream: the other
// tables keep flowing, the table's events are held in order, and once the
// operator fixed the table, retry --table applies them.
func TestMismatchedTableStopsOnlyItsOwnStream(t *testing.T) {
	modes(t, func(t *testing.T, mode replay.ApplyMode) {
		e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text); CREATE TABLE other (id int PRIMARY KEY)`, 1)
		e.mode = mode
		exec(t, e.origin, `INSERT INTO acct VALUES (1, 'a'); INSERT INTO other VALUES (1)`)
		e.once()
		exec(t, e.origin, `ALTER TABLE acct ADD COLUMN note text`)
		exec(t, e.origin, `INSERT INTO acct VALUES (2, 'b', 'needs the column'); INSERT INTO other VALUES (2)`)
		exec(t, e.origin, `UPDATE acct SET v = 'a2' WHERE id = 1; INSERT INTO other VALUES (3)`)
		e.once() // no error: only acct is held
		e.requireEqual(0, "other")
		eng := e.engine()
		if _, err := eng.Once(e.ctx); err != nil {
			t.Fatal(err)
		}
		if h := eng.Status()[0].Held; len(h) != 1 || h[0] != "public.acct" {
			t.Fatalf("the engine's status says held %v, want [public.acct]", h)
		}
		if got := queryString(t, e.replicas[0], `SELECT state || ': ' || reason FROM pgreplica.table_state WHERE table_name = 'acct'`); !strings.HasPrefix(got, "held: replica replica") || !strings.Contains(got, "pgreplica retry --table public.acct") {
			t.Fatalf("acct's state on the replica: %q", got)
		}
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM pgreplica.held WHERE table_name = 'acct'`); n != 2 {
			t.Fatalf("%d events of acct held, want 2", n)
		}
		// Retrying before the fix holds it again, nothing lost.
		if ok, err := replay.RetryTable(e.ctx, e.cfg, e.cfg.Replicas[0], pg.Table{Schema: "public", Name: "acct"}); err != nil || !ok {
			t.Fatalf("retry --table: %v %v", ok, err)
		}
		e.once()
		if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM pgreplica.held WHERE table_name = 'acct'`); n != 2 {
			t.Fatalf("after a retry without the fix, %d events of acct held, want 2", n)
		}
		exec(t, e.replicas[0], `ALTER TABLE acct ADD COLUMN note text`)
		exec(t, e.origin, `INSERT INTO acct VALUES (3, 'c', 'after')`)
		if ok, err := replay.RetryTable(e.ctx, e.cfg, e.cfg.Replicas[0], pg.Table{Schema: "public", Name: "acct"}); err != nil || !ok {
			t.Fatalf("retry --table: %v %v", ok, err)
		}
		e.once()
		e.requireEqual(0, "acct", "other")
		e.once() // the position covers the release: the table replicates again
		if got := queryString(t, e.replicas[0], `SELECT coalesce((SELECT state FROM pgreplica.table_state WHERE table_name = 'acct'), 'replicating')`); got != "replicating" {
			t.Fatalf("acct is %q after the retry", got)
		}
	})
}

// ddl.capture: a plain ALTER TABLE on the origin, by the table's owner (not
// a superuser), under load, reaches the replica in the stream; with it off,
// it does not (capture follows, the replica is left as it is).
func TestPlainDDLCaptureAndNonSuperuserDDL(t *testing.T) {
	e := newEnv(t, `CREATE TABLE acct (id int PRIMARY KEY, v text)`, 1)
	e.cfg.DDL.Capture = true
	if err := capture.Install(e.ctx, e.cfg, func(string) {}); err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("ddl_owner_%d", os.Getpid())
	exec(t, e.origin, fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END $$;
	    ALTER TABLE acct OWNER TO %[1]s`, role))
	cfg, err := pgx.ParseConfig(e.cfg.Origin.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	owner, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(context.Background())
	w := startWriter(t, originDSN(e), "acct", 1)
	time.Sleep(50 * time.Millisecond)
	exec(t, owner, `SET search_path = public; ALTER TABLE acct ADD COLUMN note text DEFAULT 'n'`) // two statements: not written
	exec(t, owner, `ALTER TABLE acct ADD COLUMN note2 int DEFAULT 7`)
	time.Sleep(50 * time.Millisecond)
	w.finish(t)
	if n := queryInt(t, e.origin, `SELECT count(*) FROM pgreplica.log WHERE op = 'E'`); n != 1 {
		t.Fatalf("%d DDL events, want 1 (the single-statement ALTER)", n)
	}
	exec(t, e.replicas[0], `ALTER TABLE acct ADD COLUMN note text DEFAULT 'n'`) // the one not written, by hand
	e.once()
	e.requireEqual(0, "acct")
	if n := queryInt(t, e.replicas[0], `SELECT count(*) FROM information_schema.columns WHERE table_name = 'acct' AND column_name = 'note2'`); n != 1 {
		t.Fatal("the replica did not get note2")
	}
}

// A fenced replica (protect) refuses an application's writes with a message
// naming the origin, while replication keeps applying; a non-superuser apply
// role passes the fence by its token; protect off removes the fence.
func TestFencedReplicaRefusesApplicationWrites(t *testing.T) {
	e := newEnv(t, `CREATE TABLE item (id int PRIMARY KEY, v text)`, 1)
	e.cfg.Replicas[0].Protect = true
	var lines []string
	if err := capture.Install(e.ctx, e.cfg, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "replica replica: fenced public.item: writes by anyone but pgreplica are refused") {
		t.Fatalf("install printed %v", lines)
	}
	role := fmt.Sprintf("app_on_replica_%d", os.Getpid())
	exec(t, e.replicas[0], fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END $$;
	    GRANT ALL ON item TO %[1]s`, role))
	cfg, err := pgx.ParseConfig(e.cfg.Replicas[0].DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	app, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	_, err = app.Exec(e.ctx, `INSERT INTO item VALUES (1, 'written on the replica')`)
	want := fmt.Sprintf("pgreplica: public.item is a replica (set test, origin %s): write to the origin instead", config.Describe(e.cfg.Origin.DSN))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("an application INSERT on the fenced replica: %v, want %q", err, want)
	}
	// The same with a token forged by the application.
	if _, err := app.Exec(e.ctx, `SET pgreplica.token = 'guess'; SET pgreplica.origin = 'test'; UPDATE item SET v = 'x'`); err == nil {
		t.Fatal("a forged token passed the fence")
	}
	exec(t, e.origin, `INSERT INTO item VALUES (1, 'a'), (2, 'b'); UPDATE item SET v = 'c' WHERE id = 2; DELETE FROM item WHERE id = 1`)
	e.once()
	e.requireEqual(0, "item")

	e.cfg.Replicas[0].Protect = false
	lines = nil
	if err := capture.Install(e.ctx, e.cfg, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "replica replica: removed the fence of public.item (protect is off)") {
		t.Fatalf("install printed %v", lines)
	}
	if _, err := app.Exec(e.ctx, `INSERT INTO item VALUES (9, 'now allowed')`); err != nil {
		t.Fatalf("after protect is off: %v", err)
	}
}
