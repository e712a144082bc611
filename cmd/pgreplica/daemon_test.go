package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/control"
)

// daemon is a `pgreplica run --daemon` process.
type daemon struct {
	cmd     *exec.Cmd
	logFile string
	done    chan error
}

func startDaemon(t *testing.T, cfg string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{logFile: t.TempDir() + "/daemon.log", done: make(chan error, 1)}
	args := append([]string{"-c", cfg, "run", "--daemon", "--log-format", "json", "--log-file", d.logFile}, extra...)
	d.cmd = exec.Command(binary(t), args...)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// logLines returns the daemon's JSON log messages ("msg" fields).
func (d *daemon) logLines(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(d.logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func (d *daemon) hasLog(t *testing.T, msg string) bool {
	for _, m := range d.logLines(t) {
		if m["msg"] == msg {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, dsn, sql string) int64 {
	t.Helper()
	var n int64
	fmt.Sscan(queryText(t, dsn, "SELECT ("+sql+")::text"), &n)
	return n
}

func TestDaemonReloadsOnSIGHUPAndStopsOnSIGTERM(t *testing.T) {
	cfg, origin, replica := dbs(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	p := shared.Get(t)
	second, err := p.Replica.CreateDB(context.Background(), "second")
	if err != nil {
		t.Fatal(err)
	}
	replica2 := p.Replica.DSN(second)
	execSQL(t, replica2, "CREATE TABLE t (id int PRIMARY KEY, v text)")

	// With the control endpoint on: it must survive the reloads.
	sock := t.TempDir() + "/c.sock"
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("control:\n  socket: "+sock+"\n")...), 0o600)
	d := startDaemon(t, cfg)
	execSQL(t, origin, "INSERT INTO t VALUES (1, 'before reload')")
	eventually(t, 10*time.Second, "row 1 on r1", func() bool { return count(t, replica, "SELECT count(*) FROM t") == 1 })

	// An invalid config on SIGHUP is logged and the running one kept.
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte("name: shop\nbogus: 1\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "reload failure logged", func() bool { return d.hasLog(t, "reload failed; keeping the running config") })
	execSQL(t, origin, "INSERT INTO t VALUES (2, 'still running')")
	eventually(t, 10*time.Second, "row 2 on r1", func() bool { return count(t, replica, "SELECT count(*) FROM t") == 2 })

	// A second replica added to the config and installed is served after SIGHUP.
	withSecond := strings.Replace(string(good), "control:", fmt.Sprintf("  - name: r2\n    dsn: %q\ncontrol:", replica2), 1)
	os.WriteFile(cfg, []byte(withSecond), 0o600)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "reload logged", func() bool { return d.hasLog(t, "reloading config") })
	execSQL(t, origin, "INSERT INTO t VALUES (3, 'after reload')")
	eventually(t, 10*time.Second, "row 3 on r2", func() bool { return count(t, replica2, "SELECT count(*) FROM t WHERE id = 3") == 1 })
	eventually(t, 5*time.Second, "control endpoint after reload", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := control.Dial(sock).Status(ctx)
		return err == nil && len(st.Replicas) == 2
	})

	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
	if !d.hasLog(t, "engine stopped") {
		t.Fatal("no 'engine stopped' in the log")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	for _, m := range d.logLines(t) {
		if s := fmt.Sprint(m); strings.Contains(s, "password") {
			t.Fatalf("log mentions a password: %s", s)
		}
	}
}

func TestDaemonFatalWhenNotInstalled(t *testing.T) {
	cfg, _, _ := dbs(t, "CREATE TABLE t (id int PRIMARY KEY)")
	out, err := exec.Command(binary(t), "-c", cfg, "run", "--daemon").CombinedOutput()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if code != 1 || !strings.HasPrefix(lines[0], "Error: pgreplica is not installed on the origin ") {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
}

const bankSchema = `
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE history (id bigserial PRIMARY KEY, account int, delta int);`

// bankLoad runs bank transactions until ctx ends, as fast as they go.
func bankLoad(ctx context.Context, dsn string, workers int) func() int64 {
	return pacedBankLoad(ctx, dsn, workers, 0)
}

// pacedBankLoad runs bank transactions until ctx ends, pausing pause after
// each, and returns a function that waits and gives their number.
func pacedBankLoad(ctx context.Context, dsn string, workers int, pause time.Duration) func() int64 {
	var n atomic.Int64
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
			for ctx.Err() == nil {
				a, d := rand.IntN(50)+1, rand.IntN(100)-50
				_, err := conn.Exec(ctx, fmt.Sprintf(`BEGIN; UPDATE counter SET n = n + 1;
UPDATE accounts SET balance = balance + %d WHERE id = %d; INSERT INTO history (account, delta) VALUES (%d, %d); COMMIT`, d, a, a, d))
				if err == nil {
					n.Add(1)
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return func() int64 { wg.Wait(); return n.Load() }
}

// While a steady write load runs, the daemon is killed with SIGKILL at
// random moments and restarted. In the end every table is equal, every
// captured event was applied exactly once, and status says caught up.
func TestDaemonKilledRepeatedlyLosesAndRepeatsNothing(t *testing.T) {
	cfg, origin, replica := dbs(t, bankSchema)
	execSQL(t, origin, "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 50) g; INSERT INTO counter VALUES (1, 0)")
	execSQL(t, replica, "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 50) g; INSERT INTO counter VALUES (1, 0)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	// Small batches, so that kills land between and inside intervals.
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("batch:\n  max_events: 50\npoll_interval: 100ms\n")...), 0o600)

	ctx, stop := context.WithCancel(context.Background())
	wait := bankLoad(ctx, origin, 3)
	kills := 0
	for i := 0; i < 6; i++ {
		d := startDaemon(t, cfg)
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		d.cmd.Process.Kill()
		<-d.done
		kills++
	}
	stop()
	committed := wait()
	if committed < 100 {
		t.Fatalf("only %d transactions under load", committed)
	}
	out, errOut, code := cli(t, "", "-c", cfg, "replicate", "--once")
	if code != 0 {
		t.Fatalf("replicate --once: %d %s", code, errOut)
	}
	t.Logf("%d kills, %d transactions; %s", kills, committed, strings.TrimSpace(out))
	requireExact(t, origin, replica) // after the kills
	if n, h := count(t, replica, "SELECT n FROM counter"), count(t, replica, "SELECT count(*) FROM history"); n != h {
		t.Fatalf("counter %d != history rows %d", n, h)
	}

	out, _, code = cli(t, "", "-c", cfg, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != statusNoEngine { // the daemon is gone
		t.Fatalf("status --json: %d %v\n%s", code, err, out)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].Name != "r1" || st.Replicas[0].Pending == nil || *st.Replicas[0].Pending != 0 ||
		st.Replicas[0].LagSeconds != 0 || st.Replicas[0].State != "caught up" || st.Replicas[0].LastAppliedAt == nil {
		t.Fatalf("status after catching up: %s", out)
	}
	var raw map[string][]map[string]any
	json.Unmarshal([]byte(out), &raw)
	for _, key := range []string{"name", "pending", "lag_seconds", "last_applied_at", "conflicts"} {
		if _, ok := raw["replicas"][0][key]; !ok {
			t.Fatalf("status --json lacks %q: %s", key, out)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
