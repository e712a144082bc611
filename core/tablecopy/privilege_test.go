package tablecopy_test

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/preflight"
	"pgreplica/core/tablecopy"
)

// pagila-like: a parent and a bigger child with ON DELETE CASCADE, and
// last_updated triggers that stamp every UPDATE.
const fkSchema = `
CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.last_update := clock_timestamp(); RETURN NEW; END $$;
CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
CREATE TABLE rental (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer ON DELETE CASCADE ON UPDATE CASCADE,
                     amount numeric(6,2), filler text, last_update timestamptz NOT NULL DEFAULT now());
CREATE TABLE payment (id int PRIMARY KEY, rental_id int NOT NULL REFERENCES rental, amount numeric(6,2), filler text);
CREATE SEQUENCE rental_seq;
CREATE TRIGGER last_updated BEFORE UPDATE ON customer FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER last_updated BEFORE UPDATE ON rental FOR EACH ROW EXECUTE FUNCTION last_updated();`

// A non-superuser apply role with exactly the README's grants, on a replica
// restored with pg_dump -s (foreign keys and triggers present): install
// names the replica's triggers and foreign-key actions that will run and,
// with the operator's consent, disables the triggers; the copy under load
// respects the foreign keys (payment, the biggest, references rental);
// apply, verify equal, no conflict, and no value rewritten by a replica
// trigger (the last_update stamps are the origin's).
func TestNonSuperuserApplyRoleOnARestoredReplica(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, fkSchema)
	exec(t, e.origin, `INSERT INTO customer SELECT g, 'c' || g FROM generate_series(1, 300) g;
	                   INSERT INTO rental SELECT g, 1 + g % 300, g % 97, repeat('x', 200) FROM generate_series(1, 6000) g;
	                   INSERT INTO payment SELECT g, 1 + (g * 300) % 6000, 1, repeat('y', 400) FROM generate_series(1, 8000) g`)

	// The replica: the origin's schema, restored as the DBA would.
	dump := osexec.CommandContext(e.ctx, filepath.Join(e.pair.Origin.BinDir(), "pg_dump"), "-s", "-d", e.originDSN)
	ddl, err := dump.Output()
	if err != nil {
		t.Fatalf("pg_dump -s: %v", err)
	}
	restore := osexec.CommandContext(e.ctx, filepath.Join(e.pair.Replica.BinDir(), "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", e.replicaDSN)
	restore.Stdin = strings.NewReader(string(ddl))
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore the schema: %v\n%s", err, out)
	}

	// The apply role and the README's grants.
	role := fmt.Sprintf("apply_np_%d", os.Getpid())
	dbName := queryString(t, e.replica, "SELECT current_database()")
	exec(t, e.replica, fmt.Sprintf(`DO $$ BEGIN
	    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE %[1]s LOGIN; END IF; END $$;
	  GRANT CONNECT, CREATE ON DATABASE %[2]s TO %[1]s;
	  GRANT USAGE ON SCHEMA public TO %[1]s;
	  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO %[1]s;
	  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %[1]s;
	  ALTER TABLE customer OWNER TO %[1]s; ALTER TABLE rental OWNER TO %[1]s; ALTER TABLE payment OWNER TO %[1]s;`, role, pgx.Identifier{dbName}.Sanitize()))
	cfg, err := pgx.ParseConfig(e.replicaDSN)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Replicas[0].DSN = fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, role, dbName)

	// Fenced as well: the non-superuser apply session passes the fence by
	// its token (it cannot switch triggers off).
	e.cfg.Replicas[0].Protect = true
	var lines []string
	err = capture.InstallWith(e.ctx, e.cfg, capture.Options{DisableReplicaTriggers: true}, func(l string) { lines = append(lines, l) })
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	report := strings.Join(lines, "\n")
	for _, want := range []string{
		"replica replica: the apply role cannot set session_replication_role: these foreign-key actions run on applied changes (and the origin's own events then find rows already gone): rental (rental_customer_id_fkey)",
		"replica replica: disabled trigger last_updated on public.customer (undo: ALTER TABLE public.customer ENABLE TRIGGER last_updated)",
		"replica replica: disabled trigger last_updated on public.rental (undo: ALTER TABLE public.rental ENABLE TRIGGER last_updated)",
		"replica replica: fenced public.payment: writes by anyone but pgreplica are refused",
	} {
		if !strings.Contains(report, want) {
			t.Fatalf("install report lacks\n%s\nin:\n%s", want, report)
		}
	}

	// The cascade is captured as it happens on the origin, parent first:
	// replayed in that order on the replica, its own cascade would already
	// have deleted the children. The operator follows install's advice and
	// drops that foreign key there; payment's (no action) stays, and the
	// copy has to respect it.
	// check says the same as install.
	rep := preflight.Run(e.ctx, e.cfg)
	var said bool
	for _, f := range rep.Findings {
		if f.Severity == preflight.Warn && f.Problem == "replica replica: the apply role cannot set session_replication_role: these foreign-key actions run on applied changes (and the origin's own events then find rows already gone): rental (rental_customer_id_fkey)" {
			said = true
		}
	}
	if !said {
		t.Fatalf("check does not name the replica's foreign-key action: %+v", rep.Findings)
	}
	exec(t, e.replica, `ALTER TABLE rental DROP CONSTRAINT rental_customer_id_fkey`)

	// A load on the origin during the copy: updates (stamped by the
	// origin's trigger), new rentals, customers deleted with their rentals.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := connect(t, e.originDSN)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, q := range []string{
				fmt.Sprintf(`UPDATE rental SET amount = amount + 1 WHERE id = %d`, i*11%6000+1),
				fmt.Sprintf(`INSERT INTO rental VALUES (%d, %d, 1, 'new')`, 100000+i, 1+i%100),
				fmt.Sprintf(`UPDATE customer SET name = name || '+' WHERE id = %d`, 1+i*7%300),
				fmt.Sprintf(`INSERT INTO payment VALUES (%d, %d, 2, 'p')`, 100000+i, 100000+i),
				fmt.Sprintf(`DELETE FROM customer WHERE id = %d AND id > 100`, 300-i), // cascades to its rentals
			} {
				if _, err := writer.Exec(context.Background(), q); err != nil {
					t.Errorf("%s: %v", q, err)
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	err = tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Workers: 2}, func(tablecopy.Progress) {})
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("sync as a non-superuser with foreign keys on the replica: %v", err)
	}
	e.once()
	e.requireVerifyEqual()
	e.requireEqual("customer", "rental", "payment")
	if n := queryInt(t, e.replica, "SELECT count(*) FROM pgreplica.conflict"); n != 0 {
		t.Fatalf("%d conflicts recorded on the replica: %s", n, queryString(t, e.replica, "SELECT string_agg(DISTINCT kind || ' ' || table_name || ' ' || op::text, ', ') FROM pgreplica.conflict"))
	}
}
