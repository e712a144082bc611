package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"pgreplica/core/pgtest"
	"pgreplica/tui/sshserve/sshtest"
)

// startProc runs the pgreplica binary with args and a JSON log file.
func startProc(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{logFile: filepath.Join(t.TempDir(), "pgreplica.log"), done: make(chan error, 1)}
	d.cmd = exec.Command(binary(t), append(args, "--log-format", "json", "--log-file", d.logFile)...)
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

// stop sends SIGTERM and wants exit status 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("pgreplica after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pgreplica did not stop on SIGTERM")
	}
}

// loggedWith finds a JSON log record with msg whose fields include want.
func (d *daemon) loggedWith(t *testing.T, msg string, want map[string]any) bool {
	for _, m := range d.logLines(t) {
		if m["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			if m[k] != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func listening(t *testing.T, d *daemon, addr string) {
	t.Helper()
	eventually(t, 20*time.Second, "ssh server listening on "+addr, func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("pgreplica exited: %v", err)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// row is the screen line that starts with the replica's row.
func row(screen, name string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " ▸"), name+" ") {
			return l
		}
	}
	return ""
}

var sgr = regexp.MustCompile("\x1b\\[([0-9;:]*)m")

// colours reports whether raw sets a foreground or background colour.
func colours(raw string) bool {
	for _, m := range sgr.FindAllStringSubmatch(raw, -1) {
		for _, p := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ';' || r == ':' }) {
			var n int
			fmt.Sscan(p, &n)
			if n >= 30 && n <= 49 || n >= 90 && n <= 107 {
				return true
			}
		}
	}
	return false
}

var lastBatch = regexp.MustCompile(`r1: last batch \d+ events in \S+`)

// TestServeSSH drives `pgreplica serve --ssh` with a real SSH client: the
// monitor at 80x24, one engine behind two sessions, the read-only key, the
// refusals, a revoked key, the audit log; then `run --daemon --serve-ssh`
// on the same host key (known_hosts still passes) and a `serve` attached
// to that daemon's control socket.
func TestServeSSH(t *testing.T) {
	cfg, origin, replica := dbs(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatal(errOut)
	}
	// t2 comes after the install: not captured, so the TUI offers i on it.
	execSQL(t, origin, "CREATE TABLE t2 (id int PRIMARY KEY)")
	execSQL(t, replica, "CREATE TABLE t2 (id int PRIMARY KEY)")

	dir := t.TempDir()
	ops, watch := sshtest.NewKey(t, "ops@laptop"), sshtest.NewKey(t, "watch@desk")
	fullFile, roFile := filepath.Join(dir, "ops.keys"), filepath.Join(dir, "watch.keys")
	os.WriteFile(fullFile, []byte(ops.Line), 0o600)
	os.WriteFile(roFile, []byte(watch.Line), 0o600)
	addr := freeAddr(t)
	base := mustRead(t, cfg)
	os.WriteFile(cfg, append(base, fmt.Sprintf("serve:\n  ssh:\n    host_key: keys/host\n    authorized_keys: %s\n    read_only_keys: %s\n    max_sessions: 4\n", fullFile, roFile)...), 0o600)

	d := startProc(t, "-c", cfg, "serve", "--ssh", addr)
	listening(t, d, addr)
	hostKey := filepath.Join(filepath.Dir(cfg), "keys", "host") // relative to the config file
	if st, err := os.Stat(hostKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v %v, want a file of mode 0600", st, err)
	}

	// The monitor, sized to the client's 80x24, with its user and address.
	var seen gossh.PublicKey
	a := sshtest.Open(t, addr, ops, sshtest.Options{User: "ops", HostKey: func(_ string, _ net.Addr, k gossh.PublicKey) error { seen = k; return nil }})
	s := a.WaitFor(t, 20*time.Second, "[2 Monitor]", "REPLICA", "daemon RUNNING", "ops@127.0.0.1")
	lines := strings.Split(s, "\n")
	rule := strings.Repeat("─", 80)
	if len(lines) != 24 || lines[2] != rule || lines[21] != rule || !strings.HasPrefix(lines[0], " pgreplica") {
		t.Fatalf("monitor not drawn at 80x24:\n%s", s)
	}
	if !colours(a.Raw()) {
		t.Error("an xterm-256color session got no colour")
	}

	// Two sessions at once show the one engine: the same last batch, as
	// measured by that engine, and the same last apply.
	b := sshtest.Open(t, addr, watch, sshtest.Options{User: "watch", Env: map[string]string{"NO_COLOR": "1"}})
	b.WaitFor(t, 20*time.Second, "[2 Monitor]", "watch@127.0.0.1 read-only")
	execSQL(t, origin, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 3) g")
	sa := a.WaitFor(t, 20*time.Second, "r1: last batch 3 events")
	sb := b.WaitFor(t, 20*time.Second, "r1: last batch 3 events")
	keep(t, "ssh-monitor-80x24", sa)
	keep(t, "ssh-monitor-read-only-80x24", sb)
	if la, lb := lastBatch.FindString(sa), lastBatch.FindString(sb); la == "" || la != lb {
		t.Errorf("sessions show different batches: %q and %q", la, lb)
	}
	ra, rb := row(sa, "r1"), row(sb, "r1")
	if ra == "" || len(ra) < 10 || len(rb) < 10 || ra[len(ra)-10:] != rb[len(rb)-10:] {
		t.Errorf("sessions show different last applies:\n%s\n%s", ra, rb)
	}
	if colours(b.Raw()) {
		t.Error("a session with NO_COLOR=1 got colours")
	}
	// TERM=dumb: no colour and ASCII glyphs, in that session only.
	dumb := sshtest.Open(t, addr, ops, sshtest.Options{User: "ops", Term: "dumb"})
	sd := dumb.WaitFor(t, 20*time.Second, "[2 Monitor]", "r1: last batch 3 events")
	if l := strings.Split(sd, "\n"); l[2] != strings.Repeat("-", 80) || colours(dumb.Raw()) {
		t.Errorf("TERM=dumb session not plain ASCII:\n%s", sd)
	}
	if !strings.Contains(a.Screen(), rule) {
		t.Error("the TERM=dumb session changed another session's look")
	}
	// Quitting a session leaves the engine running for the others.
	dumb.Type("q")
	select {
	case <-dumb.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the session")
	}

	// Read-only: install is not offered, and a forced i does nothing.
	b.Type("1")
	sb = b.WaitFor(t, 20*time.Second, "public.t2", "MISSING")
	if strings.Contains(sb, "i install") || strings.Contains(sb, "Press i") || !strings.Contains(sb, "This session is read-only") {
		t.Errorf("read-only session offers install:\n%s", sb)
	}
	keep(t, "ssh-tables-read-only-80x24", sb)
	// Keys are handled in order: once s has sorted, i and y were handled.
	b.Type("i")
	b.Type("y")
	b.Type("s")
	if sb = b.WaitFor(t, 10*time.Second, "sorted by name"); strings.Contains(sb, "Install capture") || countTriggers(t, origin) != 1 {
		t.Fatalf("read-only i did something (%d triggers):\n%s", countTriggers(t, origin), sb)
	}
	b.Type("?")
	if sb = b.WaitFor(t, 5*time.Second, "read-only: actions that change a database are hid"); strings.Contains(sb, "install capture") {
		t.Errorf("read-only help lists install:\n%s", sb)
	}

	// The full key installs, and the action is logged with its key.
	a.Type("1")
	a.WaitFor(t, 20*time.Second, "public.t2", "MISSING", "i install (asks)")
	a.Type("i")
	a.WaitFor(t, 5*time.Second, "Install capture on public.t2?")
	a.Type("y")
	eventually(t, 20*time.Second, "capture installed on t2", func() bool { return countTriggers(t, origin) == 2 })
	eventually(t, 5*time.Second, "install logged with the key", func() bool {
		return d.loggedWith(t, "tui: install capture on public.t2", map[string]any{"user": "ops", "key": ops.Fingerprint(), "key_comment": "ops@laptop", "via": "ssh"})
	})

	a.Type("2")
	execSQL(t, origin, "INSERT INTO t VALUES (100, 'after a session quit')")
	a.WaitFor(t, 20*time.Second, "r1: last batch 1 events")

	// Refused: an unknown key, a password.
	if _, err := sshtest.TryOpen(addr, sshtest.NewKey(t, "x"), sshtest.Options{}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("unknown key: %v, want refused", err)
	}
	if _, err := gossh.Dial("tcp", addr, sshtest.ClientConfig("ops", nil, gossh.Password("ops"))); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password: %v, want refused", err)
	}
	// A key removed from its file is refused at its next login, same process.
	os.WriteFile(roFile, nil, 0o600)
	if _, err := sshtest.TryOpen(addr, watch, sshtest.Options{}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("revoked key: %v, want refused", err)
	}
	if !d.loggedWith(t, "ssh key refused: not in authorized_keys nor in read_only_keys", map[string]any{"key": watch.Fingerprint()}) {
		t.Error("the refusal of the revoked key is not logged")
	}
	a.Close()
	b.Close()
	d.stop(t)

	// run --daemon --serve-ssh: the same host key, so known_hosts passes;
	// with control.socket, a serve on another port attaches to it.
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(knownhosts.Line([]string{addr}, seen)+"\n"), 0o600)
	check, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "c.sock")
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("control:\n  socket: "+sock+"\n")...), 0o600)
	dd := startProc(t, "-c", cfg, "run", "--daemon", "--serve-ssh", addr)
	listening(t, dd, addr)
	c := sshtest.Open(t, addr, ops, sshtest.Options{User: "ops", HostKey: check})
	c.WaitFor(t, 20*time.Second, "[2 Monitor]", "daemon RUNNING", "ops@127.0.0.1")

	addr2 := freeAddr(t)
	eventually(t, 10*time.Second, "control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	sv := startProc(t, "-c", cfg, "serve", "--ssh", addr2)
	listening(t, sv, addr2)
	if !sv.hasLog(t, "attaching the ssh sessions to the daemon") {
		t.Error("serve did not attach to the daemon's control socket")
	}
	e := sshtest.Open(t, addr2, ops, sshtest.Options{User: "ops"})
	e.WaitFor(t, 20*time.Second, "[2 Monitor]", "daemon RUNNING")
	execSQL(t, origin, "INSERT INTO t2 VALUES (1), (2)")
	sc := c.WaitFor(t, 20*time.Second, "r1: last batch 2 events")
	se := e.WaitFor(t, 20*time.Second, "r1: last batch 2 events")
	if lc, le := lastBatch.FindString(sc), lastBatch.FindString(se); lc == "" || lc != le {
		t.Errorf("the attached serve shows another engine: %q and %q", lc, le)
	}
	if n := count(t, replica, "SELECT count(*) FROM t2"); n != 2 {
		t.Errorf("replica has %d rows of t2, want 2", n)
	}
	c.Close()
	e.Close()
	sv.stop(t)
	dd.stop(t)
}

func TestServeSSHConfigErrors(t *testing.T) {
	cfg := writeConfig(t, "name: shop\norigin:\n  dsn: host=127.0.0.1 port=1 dbname=x\nreplicas:\n  - name: r1\n    dsn: host=127.0.0.1 port=2 dbname=x\n")
	if _, errOut, code := cli(t, "", "-c", cfg, "serve"); code != 2 || !strings.Contains(errOut, "nothing to serve: pass --ssh HOST:PORT or set serve.ssh.listen in "+cfg) {
		t.Errorf("serve without an address: exit %d, %s", code, errOut)
	}
	if _, errOut, code := cli(t, "", "-c", cfg, "serve", "--ssh", "127.0.0.1:0"); code != 1 || !strings.Contains(errOut, "serve.ssh: neither authorized_keys nor read_only_keys is set, so every login would be refused") {
		t.Errorf("serve without keys: exit %d, %s", code, errOut)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	os.WriteFile(cfg, append(mustRead(t, cfg), []byte("serve:\n  ssh:\n    authorized_keys: "+missing+"\n")...), 0o600)
	if _, errOut, code := cli(t, "", "-c", cfg, "run", "--serve-ssh", "127.0.0.1:0"); code != 1 || !strings.Contains(errOut, "serve.ssh.authorized_keys: "+missing+": no such file or directory") {
		t.Errorf("run --serve-ssh with a missing key file: exit %d, %s", code, errOut)
	}
}
