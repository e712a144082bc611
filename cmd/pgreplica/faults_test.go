package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/control"
	"pgreplica/core/pgtest/faultproxy"
)

// faultEnv is an origin and a replica database with the bank schema, a
// fault proxy in front of each server, and a config that reaches both
// through the proxies, with short timeouts (dead_path 4s, orphan_grace 2s).
type faultEnv struct {
	cfg, sock       string
	origin, replica string // direct DSNs, for the test's own reads and load
	po, pr          *faultproxy.Proxy
}

const faultTimeouts = "timeouts:\n  connect: 2s\n  dead_path: 4s\n  orphan_grace: 2s\n"

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	p := shared.Get(t)
	fe := &faultEnv{}
	fe.origin, fe.replica = p.DBs(t)
	seed := "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 50) g; INSERT INTO counter VALUES (1, 0)"
	for _, d := range []string{fe.origin, fe.replica} {
		execSQL(t, d, bankSchema)
		execSQL(t, d, seed)
	}
	via := func(dsn string) (string, *faultproxy.Proxy) {
		c, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		px, err := faultproxy.Start(fmt.Sprintf("%s:%d", c.Host, c.Port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		return strings.Replace(dsn, fmt.Sprintf("port=%d", c.Port), fmt.Sprintf("port=%d", px.Port()), 1), px
	}
	var viaO, viaR string
	viaO, fe.po = via(fe.origin)
	viaR, fe.pr = via(fe.replica)
	fe.sock = filepath.Join(t.TempDir(), "c.sock")
	fe.cfg = writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\n"+
		"poll_interval: 200ms\nbatch:\n  max_events: 50\ncontrol:\n  socket: %s\n"+faultTimeouts, viaO, viaR, fe.sock))
	if _, errOut, code := cli(t, "", "-c", fe.cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	return fe
}

// steadyLoad runs bank transactions at about 150 per second per worker
// until ctx ends, and returns a function that waits and gives their number.
func steadyLoad(ctx context.Context, dsn string, workers int) func() int64 {
	return pacedBankLoad(ctx, dsn, workers, 5*time.Millisecond)
}

// logged reports whether a log line after the first skip lines matches.
func (d *daemon) logged(t *testing.T, skip int, match func(m map[string]any) bool) bool {
	lines := d.logLines(t)
	for i := skip; i < len(lines); i++ {
		if match(lines[i]) {
			return true
		}
	}
	return false
}

func msgIs(msg, errPart string) func(m map[string]any) bool {
	return func(m map[string]any) bool {
		return m["msg"] == msg && strings.Contains(fmt.Sprint(m["err"]), errPart)
	}
}

// requireExact checks that every table is equal and that every captured
// event was applied exactly once.
func requireExact(t *testing.T, origin, replica string) {
	t.Helper()
	for _, tb := range []string{"accounts", "counter", "history"} {
		q := "SELECT coalesce(string_agg(format('%s', x), ',' ORDER BY x::text), '') FROM " + tb + " x"
		if o, r := queryText(t, origin, q), queryText(t, replica, q); o != r {
			t.Fatalf("%s differs between origin and replica", tb)
		}
	}
	captured := count(t, origin, "SELECT count(*) FROM pgreplica.log")
	applied := count(t, replica, "SELECT applied_events FROM pgreplica.position")
	if applied != captured {
		t.Fatalf("replica applied %d events, origin captured %d: something was lost or applied twice", applied, captured)
	}
	if n := count(t, replica, "SELECT count(*) FROM pgreplica.conflict"); n != 0 {
		t.Fatalf("%d conflicts recorded", n)
	}
}

func caughtUp(t *testing.T, origin, replica string) func() bool {
	return func() bool {
		return count(t, replica, "SELECT applied_events FROM pgreplica.position") == count(t, origin, "SELECT count(*) FROM pgreplica.log")
	}
}

func daemonStatus(sock string) (control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return control.Dial(sock).Status(ctx)
}

// Under load, the origin's path and then the replica's is blackholed for
// 9s (bytes accepted, nothing forwarded or closed). Each time the daemon
// logs the dead path within dead_path (4s) plus scheduling slack, its status says
// "no progress", and it resumes by itself within seconds of the path
// working again. SIGTERM during a blackhole of both exits within the
// bound. Nothing is lost or applied twice.
func TestDeadPathsAreNoticedAndHealed(t *testing.T) {
	fe := newFaultEnv(t)
	d := startDaemon(t, fe.cfg)
	defer func() {
		if t.Failed() { // what the daemon said, to tell why
			lines := d.logLines(t)
			for _, m := range lines[max(0, len(lines)-30):] {
				t.Logf("daemon: %v", m)
			}
		}
	}()
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	wait := steadyLoad(ctx, fe.origin, 2)
	eventually(t, 10*time.Second, "replicating", func() bool { return count(t, fe.replica, "SELECT count(*) FROM history") > 0 })

	for _, side := range []struct {
		name string
		p    *faultproxy.Proxy
	}{{"origin", fe.po}, {"replica r1", fe.pr}} {
		skip := len(d.logLines(t))
		start := time.Now()
		side.p.Set(faultproxy.Blackhole)
		// dead_path (4s) plus slack for a loaded CI machine (the test
		// packages run in parallel on 2 cores): the measured time is logged.
		eventually(t, 7*time.Second, side.name+": dead path logged", func() bool {
			// A batch or read waiting on the path, or a reconnect that
			// cannot get through it.
			return d.logged(t, skip, msgIs("replica error", side.name+": no answer within")) ||
				d.logged(t, skip, msgIs("replica error", side.name+": no event within")) ||
				d.logged(t, skip, msgIs("replica error", "connect to "+side.name+" ("))
		})
		noticed := time.Since(start)
		eventually(t, 8*time.Second, side.name+": no progress in the daemon's status", func() bool {
			st, err := daemonStatus(fe.sock)
			return err == nil && len(st.Replicas) == 1 && st.Replicas[0].NoProgressFor >= 5*time.Second
		})
		// status does not hang on the dead path, and says what it can.
		began := time.Now()
		out, errOut, code := cli(t, "", "-c", fe.cfg, "status", "--json")
		took := time.Since(began)
		if took > 8*time.Second {
			t.Fatalf("%s: status took %v on a dead path", side.name, took)
		}
		if side.p == fe.po {
			if code != 1 || !strings.Contains(errOut, "the daemon reports replica r1 ") || !strings.Contains(errOut, "no progress for") {
				t.Fatalf("status with the origin's path dead: %d\n%s%s", code, out, errOut)
			}
		} else {
			var st statusJSON
			if err := json.Unmarshal([]byte(out), &st); err != nil || code != statusCritical || len(st.Replicas) != 1 ||
				st.Replicas[0].Pending != nil || st.Replicas[0].State != "unreachable" {
				t.Fatalf("status with the replica's path dead: %d %v\n%s%s", code, err, out, errOut)
			}
		}
		t.Logf("%s blackholed: status answered in %v", side.name, took.Round(100*time.Millisecond))
		time.Sleep(time.Until(start.Add(9 * time.Second)))
		before := count(t, fe.replica, "SELECT count(*) FROM history")
		healed := time.Now()
		side.p.Heal()
		eventually(t, 6*time.Second, side.name+": resumed", func() bool {
			return count(t, fe.replica, "SELECT count(*) FROM history") > before
		})
		t.Logf("%s blackholed: dead path logged after %v, resumed %v after the path worked again",
			side.name, noticed.Round(100*time.Millisecond), time.Since(healed).Round(100*time.Millisecond))
		eventually(t, 5*time.Second, side.name+": recovery logged", func() bool { return d.logged(t, skip, msgIs("replica recovered", "")) })
	}
	// Every connection reset at once: back within about a second.
	before := count(t, fe.replica, "SELECT count(*) FROM history")
	reset := time.Now()
	fe.po.Reset()
	fe.pr.Reset()
	eventually(t, 4*time.Second, "resumed after resets", func() bool { return count(t, fe.replica, "SELECT count(*) FROM history") > before })
	t.Logf("every connection reset: resumed after %v", time.Since(reset).Round(100*time.Millisecond))
	stopLoad()
	committed := wait()

	// SIGTERM with both paths dead: exits within min(10s, dead_path) + 1s.
	fe.po.Set(faultproxy.Blackhole)
	fe.pr.Set(faultproxy.Blackhole)
	time.Sleep(time.Second)
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(7 * time.Second):
		t.Fatal("daemon did not stop within 7s of SIGTERM with both paths dead")
	}
	t.Logf("SIGTERM with both paths blackholed: exited after %v", time.Since(start).Round(100*time.Millisecond))
	fe.po.Heal()
	fe.pr.Heal()
	if _, errOut, code := cli(t, "", "-c", fe.cfg, "replicate", "--once"); code != 0 {
		t.Fatalf("replicate --once: %d %s", code, errOut)
	}
	requireExact(t, fe.origin, fe.replica)
	t.Logf("%d transactions under load", committed)
}

// The replica's path dies in the middle of the stream, then the daemon is
// killed: the replica server still has its apply session (idle, or idle in
// transaction holding the position row). A restarted daemon reports it (pid,
// since when), ends it after orphan_grace and goes on.
func TestOrphanedApplySessionIsEndedByARestartedDaemon(t *testing.T) {
	fe := newFaultEnv(t)
	d1 := startDaemon(t, fe.cfg)
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	wait := steadyLoad(ctx, fe.origin, 2)
	eventually(t, 10*time.Second, "replicating", func() bool { return count(t, fe.replica, "SELECT count(*) FROM history") > 0 })

	fe.pr.Set(faultproxy.Blackhole)
	time.Sleep(300 * time.Millisecond)
	d1.cmd.Process.Kill()
	<-d1.done
	fe.pr.Forget() // the old sessions stay dead; new ones pass
	fe.pr.Set(faultproxy.Pass)
	orphans := func() int64 {
		return count(t, fe.replica, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgreplica apply shop'")
	}
	if n := orphans(); n != 1 {
		t.Fatalf("%d apply sessions on the replica after the kill, want the orphan", n)
	}
	pid := count(t, fe.replica, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgreplica apply shop'")

	start := time.Now()
	d2 := startDaemon(t, fe.cfg)
	eventually(t, 8*time.Second, "orphan reported and ended", func() bool {
		return d2.logged(t, 0, func(m map[string]any) bool {
			return m["msg"] == "ending an orphaned apply session on the replica" && fmt.Sprint(m["pid"]) == fmt.Sprint(pid) && m["since"] != nil
		})
	})
	before := count(t, fe.replica, "SELECT count(*) FROM history")
	eventually(t, 5*time.Second, "applying again", func() bool { return count(t, fe.replica, "SELECT count(*) FROM history") > before })
	t.Logf("orphan pid %d ended and replication going on %v after the restart", pid, time.Since(start).Round(100*time.Millisecond))
	stopLoad()
	wait()
	eventually(t, 15*time.Second, "caught up", caughtUp(t, fe.origin, fe.replica))
	requireExact(t, fe.origin, fe.replica)
}

// Two daemons on one set under load: the second is a standby (it says so
// in its log and its status); verify --repair and replicate --once beside
// them change nothing and raise nothing. The active daemon is killed and
// the standby takes over within seconds. No stop, no conflict, data exact.
func TestTwoDaemonsStandbyTakesOver(t *testing.T) {
	fe := newFaultEnv(t)
	sock2 := filepath.Join(t.TempDir(), "c2.sock")
	cfg2 := writeConfig(t, strings.Replace(string(mustRead(t, fe.cfg)), fe.sock, sock2, 1))
	d1 := startDaemon(t, fe.cfg)
	eventually(t, 10*time.Second, "d1 active", func() bool {
		st, err := daemonStatus(fe.sock)
		return err == nil && len(st.Replicas) == 1 && st.Replicas[0].State == "streaming"
	})
	d2 := startDaemon(t, cfg2)
	eventually(t, 10*time.Second, "d2 standby", func() bool {
		st, err := daemonStatus(sock2)
		return err == nil && len(st.Replicas) == 1 && st.Replicas[0].State == "standby" && strings.HasPrefix(st.Replicas[0].Holder, "pid ")
	})
	if !d2.hasLog(t, "standby: another pgreplica engine applies this replica; taking over when it stops") {
		t.Fatal("d2 does not log that it is a standby")
	}

	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	wait := steadyLoad(ctx, fe.origin, 2)
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second)
		if out, errOut, code := cli(t, "", "-c", fe.cfg, "verify", "--repair", "--yes"); code != 0 {
			t.Fatalf("verify --repair beside the daemons: %d\n%s%s", code, out, errOut)
		}
	}
	if _, errOut, code := cli(t, "", "-c", fe.cfg, "replicate", "--once"); code != 0 || !strings.Contains(errOut, "not applied here: a running pgreplica engine applies this replica") {
		t.Fatalf("replicate --once beside the daemons: %d %s", code, errOut)
	}

	d1.cmd.Process.Kill()
	<-d1.done
	killed := time.Now()
	eventually(t, 5*time.Second, "d2 takes over", func() bool { return d2.hasLog(t, "taking over: this engine now applies the replica") })
	tookOver := time.Since(killed)
	before := count(t, fe.replica, "SELECT count(*) FROM history")
	eventually(t, 5*time.Second, "d2 applies", func() bool { return count(t, fe.replica, "SELECT count(*) FROM history") > before })
	time.Sleep(2 * time.Second)
	stopLoad()
	committed := wait()
	eventually(t, 15*time.Second, "caught up", caughtUp(t, fe.origin, fe.replica))
	requireExact(t, fe.origin, fe.replica)
	for i, d := range []*daemon{d1, d2} {
		for _, m := range d.logLines(t) {
			if m["level"] == "ERROR" || m["msg"] == "conflict" {
				t.Fatalf("d%d logged %v", i+1, m)
			}
		}
	}
	races := 0
	for _, m := range d1.logLines(t) {
		if m["msg"] == "position moved by another session; re-reading it" {
			races++
		}
	}
	t.Logf("%d transactions; %d races lost to verify --repair, each a quiet re-read; standby took over %v after the kill",
		committed, races, tookOver.Round(100*time.Millisecond))
}

// control.socket pointing at a regular file (a typo naming the config) or a
// directory: the daemon refuses to start, and the file is left intact.
func TestDaemonRefusesControlSocketThatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shop.yaml")
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	for _, at := range []struct{ path, what string }{{cfg, "a file"}, {sub, "a directory"}} {
		text := fmt.Sprintf("name: shop\norigin:\n  dsn: \"host=127.0.0.1 port=1 dbname=x\"\nreplicas:\n  - name: r1\n    dsn: \"host=127.0.0.1 port=2 dbname=y\"\ncontrol:\n  socket: %s\n", at.path)
		os.WriteFile(cfg, []byte(text), 0o600)
		_, errOut, code := cli(t, "", "-c", cfg, "run", "--daemon")
		want := "Error: control socket " + at.path + ": " + at.what + " is there, not a socket; refusing to replace it (set control.socket to a path of its own)"
		if code != 1 || !strings.HasPrefix(errOut, want) {
			t.Fatalf("control.socket at %s: code %d\n%s\nwant %s", at.what, code, errOut, want)
		}
		if got := string(mustRead(t, cfg)); got != text {
			t.Fatalf("the config file was changed: %q", got)
		}
		if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
			t.Fatalf("the directory was changed: %v", err)
		}
	}
}

// DSNs from env:VAR, @FILE and PGREPLICA_ORIGIN/PGREPLICA_REPLICA_<NAME>
// work; a password on the command line works too but is warned about.
func TestDSNFromEnvironmentAndFile(t *testing.T) {
	p := shared.Get(t)
	origin, replica := p.DBs(t)
	for _, d := range []string{origin, replica} {
		execSQL(t, d, "CREATE TABLE t (id int PRIMARY KEY)")
	}
	t.Setenv("PGR_TEST_ORIGIN", origin)
	file := filepath.Join(t.TempDir(), "replica.dsn")
	os.WriteFile(file, []byte(replica+"\n"), 0o600)
	if out, errOut, code := cli(t, "", "--name", "shop", "--origin", "env:PGR_TEST_ORIGIN", "--replica", "@"+file, "install"); code != 0 || errOut != "" {
		t.Fatalf("install with env: and @: %d\n%s%s", code, out, errOut)
	}
	execSQL(t, origin, "INSERT INTO t VALUES (1)")
	_, errOut, code := cli(t, "", "--name", "shop", "--origin", origin+" password=visible", "--replica", "@"+file, "replicate", "--once")
	warning := "warning: --origin has a password on the command line, where every local user can read it (ps, /proc/PID/cmdline); use ~/.pgpass, PGPASSWORD, --origin env:VAR or --origin @FILE\n"
	if code != 0 || errOut != warning {
		t.Fatalf("password on the command line: %d\n%s", code, errOut)
	}
	if n := count(t, replica, "SELECT count(*) FROM t"); n != 1 {
		t.Fatalf("replica has %d rows", n)
	}

	// The environment alone, no flags and no config file.
	t.Chdir(t.TempDir())
	t.Setenv("PGREPLICA_ORIGIN", origin)
	t.Setenv("PGREPLICA_REPLICA_R1", replica)
	execSQL(t, origin, "INSERT INTO t VALUES (2)")
	if out, errOut, code := cli(t, "", "--name", "shop", "status", "--json"); code != statusNoEngine || !strings.Contains(out, `"name": "r1"`) {
		t.Fatalf("status from the environment: %d\n%s%s", code, out, errOut)
	}

	_, errOut, code = cli(t, "", "--origin", "env:PGR_TEST_NOPE", "status")
	if code != 2 || !strings.Contains(errOut, "--origin env:PGR_TEST_NOPE: the environment variable PGR_TEST_NOPE is not set") {
		t.Fatalf("unset variable: %d %s", code, errOut)
	}
}

// A replica whose position cannot be read has pending null, not 0.
func TestStatusPendingUnknownForUnreachableReplica(t *testing.T) {
	cfg, _, _ := dbs(t, "CREATE TABLE t (id int PRIMARY KEY)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	text := strings.Replace(string(mustRead(t, cfg)), "replicas:\n", "replicas:\n  - name: gone\n    dsn: \"host=127.0.0.1 port=1 dbname=x sslmode=disable\"\n", 1)
	os.WriteFile(cfg, []byte(text), 0o600)
	out, errOut, code := cli(t, "", "-c", cfg, "status", "--json")
	if code != statusCritical { // a replica is unreachable
		t.Fatalf("status: %d %s", code, errOut)
	}
	var raw struct {
		Replicas []map[string]any `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw.Replicas) != 2 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	gone, r1 := raw.Replicas[0], raw.Replicas[1]
	if p, ok := gone["pending"]; !ok || p != nil || gone["state"] != "unreachable" {
		t.Fatalf("unreachable replica: %v", gone)
	}
	if r1["pending"] != float64(0) {
		t.Fatalf("reachable replica: %v", r1)
	}
	out, _, _ = cli(t, "", "-c", cfg, "status")
	if !regexp.MustCompile(`(?m)^gone\s+unreachable\s+-\s`).MatchString(out) {
		t.Fatalf("status text for an unreachable replica:\n%s", out)
	}
}
