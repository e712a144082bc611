package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const ledgerSchema = `
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE history (id bigserial PRIMARY KEY, account int, delta int);
CREATE TABLE ledger (id text PRIMARY KEY, client int NOT NULL, at timestamptz NOT NULL DEFAULT now());
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 20) g;`

// set3 is a set of an origin and two fenced replicas r1 and r2, installed,
// with the same rows everywhere.
type set3 struct {
	cfg            string
	origin, r1, r2 string
	dsns           map[string]string // by the name of the database's first role
	logDir         string
}

func newSet3(t *testing.T) *set3 {
	t.Helper()
	p := shared.Get(t)
	origin, r1 := p.DBs(t)
	db, err := p.Replica.CreateDB(context.Background(), "second")
	if err != nil {
		t.Fatal(err)
	}
	s := &set3{origin: origin, r1: r1, r2: p.Replica.DSN(db)}
	for _, d := range []string{s.origin, s.r1, s.r2} {
		execSQL(t, d, ledgerSchema)
	}
	s.cfg = writeConfig(t, fmt.Sprintf(`name: shop
# the set of the switchover tests
origin:
  dsn: %q
replicas:
  - name: r1
    dsn: %q
    protect: true
  - name: r2
    dsn: %q
    protect: true
poll_interval: 100ms
`, s.origin, s.r1, s.r2))
	if _, errOut, code := cli(t, "", "-c", s.cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	return s
}

// ledgerLoad runs client transactions until ctx ends: each writes one
// ledger row with an id of its own, a history row relying on the sequence
// default and an account update. A transaction refused by a fence (or a
// lost connection) is retried with the same id on the other database: the
// client follows the origin to wherever it moved. It returns a function
// that waits and gives the ids committed.
func ledgerLoad(ctx context.Context, dsns []string, clients int) func() []string {
	ids, _ := ledgerLoadTimed(ctx, dsns, clients)
	return ids
}

// ledgerLoadTimed is ledgerLoad that also gives the longest time in which
// no client committed (the writes' outage).
func ledgerLoadTimed(ctx context.Context, dsns []string, clients int) (func() []string, func() time.Duration) {
	var mu sync.Mutex
	var ids []string
	var last time.Time
	var gap time.Duration
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := 0
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			}()
			for n := 0; ctx.Err() == nil; {
				if conn == nil {
					var err error
					if conn, err = pgx.Connect(ctx, dsns[at]); err != nil {
						at = (at + 1) % len(dsns)
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				id := fmt.Sprintf("c%d-%d", c, n)
				// Not cancelled by ctx: a commit is known to have happened or not.
				xctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := conn.Exec(xctx, fmt.Sprintf(`BEGIN; INSERT INTO ledger (id, client) VALUES ('%s', %d);
INSERT INTO history (account, delta) VALUES (%d, 1); UPDATE accounts SET balance = balance + 1 WHERE id = %d; COMMIT`, id, c, n%20+1, n%20+1))
				cancel()
				if err == nil {
					mu.Lock()
					ids = append(ids, id)
					if now := time.Now(); !last.IsZero() && now.Sub(last) > gap {
						gap = now.Sub(last)
					}
					last = time.Now()
					mu.Unlock()
					n++
					time.Sleep(2 * time.Millisecond)
					continue
				}
				// Refused (fenced, a replica) or cut: try the other database.
				conn.Close(context.Background())
				conn = nil
				at = (at + 1) % len(dsns)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return func() []string { wg.Wait(); return ids }, func() time.Duration { mu.Lock(); defer mu.Unlock(); return gap }
}

func ledgerIDs(t *testing.T, dsn string) string {
	return queryText(t, dsn, "SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM ledger")
}

func sortedJoin(ids []string) string {
	s := append([]string{}, ids...)
	slices.Sort(s)
	return strings.Join(s, ",")
}

// Under a running load, the origin moves to r1 and back; the clients
// follow it. No ledger row is lost or doubled, the sequence default works
// on the new origin right away, the old origin and r2 receive the new
// origin's changes, verify is equal, and writes go to exactly one origin.
func TestSwitchoverUnderLoadAndBack(t *testing.T) {
	s := newSet3(t)
	// A row whose id is above the sequence: the new origin's sequence
	// must not stay below it.
	execSQL(t, s.origin, "INSERT INTO history (id, account, delta) VALUES (100000, 0, 0)")
	d := startDaemon(t, s.cfg)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	wait, outage := ledgerLoadTimed(ctx, []string{s.origin, s.r1}, 3)
	eventually(t, 10*time.Second, "rows on r1", func() bool { return count(t, s.r1, "SELECT count(*) FROM ledger") > 20 })

	for round, to := range []struct{ origin, replica string }{{s.r1, s.origin}, {s.origin, s.r1}} {
		stopDaemon(t, d)
		start := time.Now()
		out, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--to", "r1", "--yes")
		if code != 0 {
			t.Fatalf("round %d: switchover: %d\n%s\n%s", round, code, out, errOut)
		}
		t.Logf("round %d: switchover took %v:\n%s", round, time.Since(start).Round(time.Millisecond), out)
		for _, want := range []string{"step 1/7 fence done", "catchup: every replica applied everything", "step 7/7 verify done",
			"verify: replica r1: equal", "verify: replica r2: equal", "switched over: every replica equals the new origin"} {
			if !strings.Contains(out, want) {
				t.Fatalf("round %d: switchover output lacks %q:\n%s", round, want, out)
			}
		}
		if round == 0 && (!strings.Contains(out, "sequence public.history_id_seq on r1: set to 100000 (origin ") || !strings.Contains(out, "max(public.history.id) 100000")) {
			t.Fatalf("round %d: the sequence was not set above max(id):\n%s", round, out)
		}
		// The sequence default works on the new origin right away.
		execSQL(t, to.origin, "INSERT INTO history (account, delta) VALUES (0, 0)")
		// The old origin is a fenced replica now: it refuses an
		// application's INSERT while replication keeps applying there.
		d = startDaemon(t, s.cfg)
		applied := count(t, to.replica, "SELECT count(*) FROM ledger")
		if err := execErr(to.replica, "INSERT INTO ledger (id, client) VALUES ('stray', 0)"); err == nil || !strings.Contains(err.Error(), "is a replica (set shop, origin ") {
			t.Fatalf("round %d: a write on the old origin: %v", round, err)
		}
		eventually(t, 10*time.Second, "the old origin applies the new origin's changes", func() bool {
			return count(t, to.replica, "SELECT count(*) FROM ledger") > applied+20
		})
	}
	stop()
	committed := wait()
	if len(committed) < 50 {
		t.Fatalf("only %d client transactions", len(committed))
	}
	eventually(t, 15*time.Second, "caught up", func() bool {
		want := ledgerIDs(t, s.origin)
		return ledgerIDs(t, s.r1) == want && ledgerIDs(t, s.r2) == want
	})
	if got, want := ledgerIDs(t, s.origin), sortedJoin(committed); got != want {
		t.Fatalf("the ledger differs from the committed transactions: %d rows, %d committed", strings.Count(got, ",")+1, len(committed))
	}
	stopDaemon(t, d)
	if out, errOut, code := cli(t, "", "-c", s.cfg, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("%d client transactions, none lost or doubled; longest time without a commit %v", len(committed), outage().Round(time.Millisecond))
}

func stopDaemon(t *testing.T, d *daemon) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

func execErr(dsn, sql string) error {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// originOf is the DSN the config file names as the origin.
func originOf(t *testing.T, cfg string) string {
	t.Helper()
	for _, l := range strings.Split(string(mustRead(t, cfg)), "\n") {
		if strings.HasPrefix(l, "  dsn: ") && !strings.HasPrefix(l, "    ") {
			v := strings.TrimPrefix(l, "  dsn: ")
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("no origin dsn in %s", cfg)
	return ""
}

// requireConsistent checks a set after an interrupted switchover was
// resumed or aborted: no switchover under way, the config names origin,
// verify is equal, a write works on the origin and only there, and it
// reaches both replicas.
func requireConsistent(t *testing.T, s *set3, origin, what string) {
	t.Helper()
	if _, err := os.Stat(s.cfg + ".switchover"); err == nil {
		t.Fatalf("%s: the state file is still there", what)
	}
	if got := originOf(t, s.cfg); got != origin {
		t.Fatalf("%s: the config names origin %s, want %s", what, got, origin)
	}
	if out, errOut, code := cli(t, "", "-c", s.cfg, "verify"); code != 0 {
		t.Fatalf("%s: verify: %d\n%s\n%s", what, code, out, errOut)
	}
	id := strings.ReplaceAll(what, " ", "-")
	for _, d := range []string{s.origin, s.r1, s.r2} {
		if n := count(t, d, "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgreplica_switchover'"); n != 0 {
			t.Fatalf("%s: %d switchover fences left", what, n)
		}
		// Exactly one node captures.
		if n, want := count(t, d, "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgreplica_capture'"), map[bool]int64{true: 3, false: 0}[d == origin]; n != want {
			t.Fatalf("%s: %d capture triggers, want %d", what, n, want)
		}
		err := execErr(d, fmt.Sprintf("INSERT INTO ledger (id, client) VALUES ('%s', 0); INSERT INTO history (account, delta) VALUES (0, 0)", id))
		switch {
		case d == origin && err != nil:
			t.Fatalf("%s: a write on the origin: %v", what, err)
		case d != origin && (err == nil || !strings.Contains(err.Error(), "is a replica (set shop, origin ")):
			t.Fatalf("%s: a write on a replica: %v", what, err)
		}
	}
	if _, errOut, code := cli(t, "", "-c", s.cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("%s: replicate: %s", what, errOut)
	}
	want := ledgerIDs(t, origin)
	if !strings.Contains(want, id) || ledgerIDs(t, s.r1) != want || ledgerIDs(t, s.r2) != want {
		t.Fatalf("%s: the ledgers differ after replicate", what)
	}
}

// The switchover process is killed (SIGKILL) right after each step (and at
// four points inside the promote step), and
// the switchover is then resumed, or (in another case) aborted: the set is
// consistent afterwards each time. An abort once the fences were lifted
// is refused (the new origin may have taken writes) and resume finishes.
func TestSwitchoverKilledAtEachStepResumesOrAborts(t *testing.T) {
	s := newSet3(t)
	origin, other := s.origin, s.r1
	type kill struct{ at, how string }
	var kills []kill
	for _, step := range []string{"fence", "catchup", "sequences", "promote", "config", "unfence"} {
		kills = append(kills, kill{step, "resume"}, kill{step, "abort"})
	}
	// Inside the promote step, too.
	kills = append(kills, kill{"promote.saved", "abort"}, kill{"promote.uncaptured", "resume"}, kill{"promote.installed", "abort"}, kill{"promote.registered", "resume"})
	for _, k := range kills {
		step, how := k.at, k.how
		done, inside := step, strings.HasPrefix(step, "promote.")
		if inside {
			done = "sequences"
		}
		what := step + " " + how
		cmd := exec.Command(binary(t), "-c", s.cfg, "switchover", "--to", "r1", "--yes")
		cmd.Env = append(os.Environ(), testDieAfterStep+"="+step)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("%s: switchover was not killed: %v\n%s", what, err, out)
		}
		n := map[string]string{"fence": "1", "catchup": "2", "sequences": "3", "promote": "4", "config": "5", "unfence": "6"}
		if inside && (!strings.Contains(string(out), "step 4/7 promote\n") || strings.Contains(string(out), "step 4/7 promote done")) ||
			!inside && !strings.Contains(string(out), "step "+n[step]+"/7 "+step+" done") {
			t.Fatalf("%s: output:\n%s", what, out)
		}
		// Interrupted, nothing else runs: a second switchover is refused.
		if _, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--to", "r1", "--yes"); code != 1 || !strings.Contains(errOut, "a switchover of set shop to r1 is under way (done: "+done+"); finish it with pgreplica switchover --resume or undo it with --abort") {
			t.Fatalf("%s: a second switchover: %d %q", what, code, errOut)
		}
		// status says so: critical, with the way out.
		if out, errOut, code := cli(t, "", "-c", s.cfg, "status", "--json"); code != statusCritical ||
			!strings.Contains(out, `"switchover": "a switchover of set shop to r1 is under way (done: `+done+`): the origin refuses writes to the replicated tables; finish it with pgreplica switchover --resume or undo it with --abort"`) {
			t.Fatalf("%s: status during the switchover: %d\n%s%s", what, code, out, errOut)
		}
		if how == "abort" {
			out, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--abort", "--yes")
			if step == "unfence" {
				if code != 1 || !strings.Contains(errOut, "lifted its fences already: the new origin may have taken writes; finish it with pgreplica switchover --resume") {
					t.Fatalf("%s: %d %q", what, code, errOut)
				}
				how = "resume"
			} else if code != 0 || !strings.Contains(out, "aborted: ") {
				t.Fatalf("%s: %d\n%s\n%s", what, code, out, errOut)
			}
		}
		if how == "resume" {
			out, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--resume")
			if code != 0 || !strings.Contains(out, "resuming the switchover of set shop to r1 after step "+done) || !strings.Contains(out, "switched over: every replica equals the new origin") {
				t.Fatalf("%s: %d\n%s\n%s", what, code, out, errOut)
			}
			origin, other = other, origin
		}
		requireConsistent(t, s, origin, what)
	}
}

// Bad input is refused with one clear line before anything changes: a
// name that is not a replica, a replica lagging more than --max-lag, a
// replica whose tables differ, a running daemon. --dry-run prints the plan
// and changes nothing either; without a terminal and --yes it refuses.
func TestSwitchoverRefusesBadInputChangingNothing(t *testing.T) {
	s := newSet3(t)
	before := string(mustRead(t, s.cfg))
	objects := func() string {
		var parts []string
		for _, d := range []string{s.origin, s.r1, s.r2} {
			parts = append(parts, queryText(t, d, `SELECT coalesce(string_agg(tgname || ' ' || tgrelid::regclass::text, ',' ORDER BY 1), '') FROM pg_trigger WHERE tgname LIKE 'pgreplica%'`),
				ledgerIDs(t, d)) // (verify may move a position over what it applies, as the engine would)
		}
		return strings.Join(parts, "\n")
	}
	dbBefore := objects()
	unchanged := func(what string) {
		t.Helper()
		if got := string(mustRead(t, s.cfg)); got != before {
			t.Fatalf("%s: the config changed:\n%s", what, got)
		}
		if _, err := os.Stat(s.cfg + ".switchover"); err == nil {
			t.Fatalf("%s: a state file was left", what)
		}
		if m, _ := filepath.Glob(s.cfg + ".bak-*"); len(m) > 0 {
			t.Fatalf("%s: a backup was written: %v", what, m)
		}
		if got := objects(); got != dbBefore {
			t.Fatalf("%s: the databases changed:\n%s\nwant\n%s", what, got, dbBefore)
		}
	}
	refused := func(what, want string, args ...string) {
		t.Helper()
		out, errOut, code := cli(t, "", append([]string{"-c", s.cfg, "switchover", "--yes"}, args...)...)
		if code == 0 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
			t.Fatalf("%s: %d\nstdout:\n%s\nstderr:\n%s", what, code, out, errOut)
		}
		unchanged(what)
	}
	refused("not a replica", "Error: switchover --to nope: the set shop has no replica nope (its replicas: r1, r2)", "--to", "nope")
	refused("no mode", "switchover needs exactly one of --to REPLICA, --resume and --abort")
	refused("resume without one", "no switchover is under way for "+s.cfg, "--resume")

	out, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--to", "r2", "--dry-run")
	if code != 0 || !strings.Contains(out, "switchover of set shop: origin ") || !strings.Contains(out, "  7 verify ") || !strings.HasSuffix(out, "dry run: nothing was changed\n") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errOut)
	}
	unchanged("dry run")
	if _, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--to", "r2"); code != exitUsage || !strings.Contains(errOut, "Type r2 to make it the origin of set shop: refusing without --yes (standard input is not a terminal)") {
		t.Fatalf("without --yes: %d %q", code, errOut)
	}
	unchanged("without --yes")

	// A replica whose table differs (a row deleted behind pgreplica's back).
	execSQL(t, s.r2, "SET session_replication_role = replica; DELETE FROM accounts WHERE id = 7")
	refused("differing tables", "Error: switchover: replica r2 differs from the origin: public.accounts (1 missing, 0 extra, 0 different); make it equal first (pgreplica verify --replica r2 --repair)", "--to", "r1")
	execSQL(t, s.r2, "SET session_replication_role = replica; INSERT INTO accounts VALUES (7, 0)")

	// A replica lagging: events waiting for more than --max-lag.
	execSQL(t, s.origin, "INSERT INTO ledger (id, client) VALUES ('late', 0)")
	dbBefore = objects()
	time.Sleep(1100 * time.Millisecond)
	refused("lagging", "replica r1 lags 1s (1 events pending), more than --max-lag 1s: let it catch up first (pgreplica replicate --once)", "--to", "r1", "--max-lag", "1s")

	// A running daemon.
	d := startDaemon(t, s.cfg)
	eventually(t, 10*time.Second, "the daemon applies", func() bool { return count(t, s.r1, "SELECT count(*) FROM ledger") == 1 })
	dbBefore = objects()
	refused("daemon running", "Error: switchover: a pgreplica daemon of set shop is running (its session pid ", "--to", "r1")
	stopDaemon(t, d)
	dbBefore = objects()

	// Replicas that do not apply everything within --timeout: the step
	// fails, the origin stays fenced, and --abort puts everything back.
	out, errOut, code = cli(t, "", "-c", s.cfg, "switchover", "--to", "r1", "--yes", "--timeout", "1ms")
	if code != 1 || !strings.Contains(errOut, "Error: switchover step catchup: the replicas did not apply everything within 1ms") ||
		!strings.Contains(errOut, "the origin stays fenced; then pgreplica switchover --resume, or --abort to go back to the old origin") {
		t.Fatalf("catchup timeout: %d\n%s\n%s", code, out, errOut)
	}
	if err := execErr(s.origin, "INSERT INTO ledger (id, client) VALUES ('fenced', 0)"); err == nil || !strings.Contains(err.Error(), "pgreplica: public.ledger is fenced for the switchover of set shop to r1 (") {
		t.Fatalf("a write on the fenced origin: %v", err)
	}
	if out, errOut, code := cli(t, "", "-c", s.cfg, "switchover", "--abort", "--yes"); code != 0 || !strings.Contains(out, "aborted: ") {
		t.Fatalf("abort: %d\n%s\n%s", code, out, errOut)
	}
	os.Remove(queryBackup(t, s.cfg))
	unchanged("aborted after the timeout")
	execSQL(t, s.origin, "INSERT INTO ledger (id, client) VALUES ('after abort', 0)")
}

func queryBackup(t *testing.T, cfg string) string {
	m, _ := filepath.Glob(cfg + ".bak-*")
	if len(m) != 1 {
		t.Fatalf("backups %v", m)
	}
	return m[0]
}
