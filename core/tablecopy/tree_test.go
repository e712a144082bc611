package tablecopy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgreplica/core/tablecopy"
)

// pagila's payment shape: a partitioned table with 7 monthly partitions;
// and PostgreSQL's regression inheritance tree person/emp/student/stud_emp
// (with keys, which capture needs).
func treeSchema() string {
	var b strings.Builder
	b.WriteString(`CREATE TABLE payment (payment_id int NOT NULL, customer_id int NOT NULL, amount numeric(5,2) NOT NULL,
	    payment_date timestamptz NOT NULL, PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);
	CREATE INDEX payment_customer ON payment (customer_id);
	`)
	for m := 1; m <= 7; m++ {
		fmt.Fprintf(&b, "CREATE TABLE payment_p2022_%02d PARTITION OF payment FOR VALUES FROM ('2022-%02d-01 00:00:00+00') TO ('2022-%02d-01 00:00:00+00');\n", m, m, m+1)
	}
	b.WriteString(`
	CREATE TABLE person (id int PRIMARY KEY, name text, age int4 CHECK (age >= 0), location point);
	CREATE TABLE emp (salary int4, manager name) INHERITS (person);
	ALTER TABLE emp ADD PRIMARY KEY (id);
	CREATE TABLE student (gpa float8) INHERITS (person);
	ALTER TABLE student ADD PRIMARY KEY (id);
	CREATE TABLE stud_emp (percent int4) INHERITS (emp, student);
	ALTER TABLE stud_emp ADD PRIMARY KEY (id);
	INSERT INTO person VALUES (1, 'mike', 40, '(3.1,6.2)'), (2, 'joe', 20, '(1,2)');
	INSERT INTO emp VALUES (10, 'sharon', 25, '(15,12)', 1000, 'sam');
	INSERT INTO student VALUES (20, 'fred', 28, '(3.1,-1.5)', 3.70);
	INSERT INTO stud_emp VALUES (30, 'jeff', 23, '(8,7.7)', 600, 'sharon', 3.50, 50);
	`)
	return b.String()
}

// An empty replica gets the partitioned table with its partitions and the
// inheritance tree from sync --schema, while the origin takes writes that
// move rows between partitions; then the engine catches up and every table
// (each partition, each level of the tree with ONLY) is equal.
func TestSyncSchemaPartitionsAndInheritanceUnderLoad(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, treeSchema())
	exec(t, e.origin, `INSERT INTO payment SELECT g, g % 50, (g % 900) / 10.0, timestamptz '2022-01-01 00:00:00+00' + g * interval '15 minutes'
	                    FROM generate_series(1, 20000) g`)

	var wrote atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := connect(t, e.originDSN)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := context.Background()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, q := range []string{
				fmt.Sprintf(`INSERT INTO payment VALUES (%d, %d, 1.25, timestamptz '2022-03-01 00:00:00+00' + %d * interval '1 minute')`, 100000+i, i%50, i),
				fmt.Sprintf(`UPDATE payment SET payment_date = payment_date + interval '1 month' WHERE payment_id = %d AND payment_date < '2022-07-01'`, i*7), // moves a row to the next partition
				fmt.Sprintf(`UPDATE payment SET amount = amount + 1 WHERE payment_id = %d`, i*3),
			} {
				if _, err := writer.Exec(ctx, q); err != nil {
					t.Errorf("%s: %v", q, err)
					return
				}
			}
			wrote.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	var lines []string
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Schema: true, Workers: 2, Report: func(l string) { lines = append(lines, l) }}, func(tablecopy.Progress) {})
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if wrote.Load() < 10 {
		t.Fatalf("only %d write rounds during the copy", wrote.Load())
	}
	report := strings.Join(lines, "\n")
	for _, want := range []string{
		"replica replica: created table public.payment (4 columns, primary key, 1 index, 7 partitions)",
		"replica replica: created table public.stud_emp (",
		"inherits public.emp",
	} {
		if !strings.Contains(report, want) {
			t.Fatalf("sync report lacks %q:\n%s", want, report)
		}
	}
	if n := queryInt(t, e.replica, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'payment'::regclass`); n != 7 {
		t.Fatalf("replica's payment has %d partitions, want 7", n)
	}
	if n := queryInt(t, e.replica, `SELECT count(*) FROM pg_inherits WHERE inhrelid = 'stud_emp'::regclass`); n != 2 {
		t.Fatalf("replica's stud_emp has %d parents, want 2", n)
	}
	e.once()
	e.requireVerifyEqual()
	tables := []string{"payment"}
	for m := 1; m <= 7; m++ {
		tables = append(tables, fmt.Sprintf("payment_p2022_%02d", m))
	}
	e.requireEqual(tables...)
	for _, tb := range []string{"person", "emp", "student", "stud_emp"} {
		o := rowsOnly(t, e, tb, true)
		r := rowsOnly(t, e, tb, false)
		if o != r {
			t.Fatalf("ONLY %s differs:\norigin  %s\nreplica %s", tb, o, r)
		}
	}
}

func rowsOnly(t *testing.T, e *env, table string, origin bool) string {
	t.Helper()
	c := e.replica
	if origin {
		c = e.origin
	}
	var s string
	q := fmt.Sprintf(`SELECT coalesce(string_agg(format('%%s', x), ';' ORDER BY x.id), '') FROM ONLY %s x`, table)
	if err := c.QueryRow(context.Background(), q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}
