package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func statusOf(t *testing.T, cfg string, args ...string) (statusJSON, int, string) {
	t.Helper()
	out, errOut, code := cli(t, "", append([]string{"-c", cfg, "status", "--json"}, args...)...)
	var st statusJSON
	if code != exitErr {
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: code %d: %v\n%s\n%s", code, err, out, errOut)
		}
	}
	return st, code, errOut
}

// TestStatusExitCodes walks a replica through no engine (5), streaming
// (0), stopped by a duplicate key (4) and unreachable (4); on the way,
// `status` and `tables` count the same pending events.
func TestStatusExitCodes(t *testing.T) {
	_, origin, replica := dbs(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	sock := filepath.Join(t.TempDir(), "c.sock")
	cfg := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\ncontrol:\n  socket: %q\n", origin, replica, sock))
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	st, code, _ := statusOf(t, cfg)
	if code != statusNoEngine || st.Health != "no_engine" || st.ExitCode != statusNoEngine {
		t.Fatalf("no engine: code %d %+v", code, st)
	}
	out, _, code := cli(t, "", "-c", cfg, "status")
	if code != statusNoEngine || !strings.Contains(out, "no_engine: no pgreplica engine runs for the set (exit 5)") {
		t.Fatalf("no engine, text: code %d\n%s", code, out)
	}

	startDaemon(t, cfg)
	execSQL(t, origin, "INSERT INTO t VALUES (1, 'a')")
	eventually(t, 20*time.Second, "streaming and exit 0", func() bool {
		st, code, _ = statusOf(t, cfg, "--max-lag", "30s")
		return code == exitOK && len(st.Replicas) == 1 && st.Replicas[0].State == "streaming" && st.Replicas[0].Pending != nil && *st.Replicas[0].Pending == 0
	})

	// A row the replica has of its own: the origin's INSERT of the same
	// key stops the replica.
	execSQL(t, replica, "INSERT INTO t VALUES (2, 'replica only')")
	execSQL(t, origin, "INSERT INTO t VALUES (2, 'b'); INSERT INTO t SELECT i, 'x' FROM generate_series(3, 12) i")
	eventually(t, 20*time.Second, "stopped and exit 4", func() bool {
		st, code, _ = statusOf(t, cfg)
		return code == statusCritical && st.Replicas[0].State == "stopped"
	})
	if !strings.Contains(st.Replicas[0].Error, "duplicate key") || st.Health != "critical" {
		t.Fatalf("stopped: %+v", st)
	}
	// One source for pending: status and tables agree (11 events wait).
	out, _, code = cli(t, "", "-c", cfg, "tables", "--json")
	var tables []tableJSON
	if err := json.Unmarshal([]byte(out), &tables); err != nil || code != 0 {
		t.Fatalf("tables --json: %d %v\n%s", code, err, out)
	}
	var sum int64
	for _, tb := range tables {
		sum += tb.Pending
	}
	if p := st.Replicas[0].Pending; p == nil || *p != 11 || sum != *p {
		t.Fatalf("pending: status %v, tables %d, want 11", p, sum)
	}

	p := shared.Get(t)
	ctx := context.Background()
	if err := p.Replica.StopServer(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Replica.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	st, code, _ = statusOf(t, cfg)
	if code != statusCritical || st.Replicas[0].State != "unreachable" {
		t.Fatalf("unreachable: code %d %+v", code, st)
	}
}

// TestStatusAgainstSilentListener: a server that accepts TCP and never
// answers makes status give up within its timeout, exit 1, and say why.
func TestStatusAgainstSilentListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answer
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=x user=x sslmode=disable", port)
	cfg := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\n", dsn, strings.Replace(dsn, "dbname=x", "dbname=y", 1)))
	start := time.Now()
	_, errOut, code := cli(t, "", "-c", cfg, "status", "--timeout", "2s")
	took := time.Since(start)
	if code != exitErr || !strings.Contains(errOut, "no answer within 2s") || !strings.Contains(errOut, "Try:") {
		t.Fatalf("silent server: code %d\n%s", code, errOut)
	}
	if took > 8*time.Second {
		t.Fatalf("status took %s against a silent server (timeout 2s)", took)
	}
}

func TestStatusUsage(t *testing.T) {
	_, _, code := cli(t, "", "status", "--max-lag", "-1s")
	if code != exitUsage {
		t.Fatalf("negative --max-lag: code %d", code)
	}
}

// TestStatusWatch: --watch prints the status every interval, one JSON
// object per line, until interrupted, and exits with the last code.
func TestStatusWatch(t *testing.T) {
	cfg, _, _ := dbs(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	cmd := exec.Command(binary(t), "-c", cfg, "status", "--json", "--watch", "300ms")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 3 || code != statusNoEngine {
		t.Fatalf("watch: code %d, %d lines:\n%s", code, len(lines), out.String())
	}
	for _, l := range lines {
		var st statusJSON
		if err := json.Unmarshal([]byte(l), &st); err != nil || st.Health != "no_engine" {
			t.Fatalf("watch line %q: %v", l, err)
		}
	}
}
