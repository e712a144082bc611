package sshserve_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	gossh "golang.org/x/crypto/ssh"

	"pgreplica/core/config"
	"pgreplica/tui/sshserve"
	"pgreplica/tui/sshserve/sshtest"
)

// echo is a model that shows what the server gave it.
type echo struct {
	s    sshserve.Session
	w, h int
}

func (m *echo) Init() tea.Cmd { return nil }

func (m *echo) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.w, m.h = msg.Width, msg.Height
	case tea.KeyPressMsg:
		if msg.String() == "q" {
			return m, tea.Quit
		}
	}
	return m, nil
}

func (m *echo) View() tea.View {
	v := tea.NewView(fmt.Sprintf("size %dx%d\nuser %s ro=%v\nno_color=%q term=%q", m.w, m.h, m.s.User, m.s.ReadOnly, m.s.Getenv("NO_COLOR"), m.s.Getenv("TERM")))
	v.AltScreen = true
	return v
}

// syncBuf is a log buffer safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type fixture struct {
	dir       string
	addr      string
	full, ro  sshtest.Key
	log       *syncBuf
	fullFile  string
	roFile    string
	hostKey   string
	cancel    context.CancelFunc
	done      chan error
	serverCfg config.SSH
	handshake time.Duration
}

func start(t *testing.T, mutate func(*config.SSH)) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), full: sshtest.NewKey(t, "ops@laptop"), ro: sshtest.NewKey(t, "watch@desk"), log: &syncBuf{}}
	f.fullFile, f.roFile, f.hostKey = filepath.Join(f.dir, "authorized_keys"), filepath.Join(f.dir, "read_only_keys"), filepath.Join(f.dir, "keys", "host")
	write(t, f.fullFile, "# operators\n"+f.full.Line)
	write(t, f.roFile, f.ro.Line)
	f.serverCfg = config.SSH{Listen: "127.0.0.1:0", HostKey: f.hostKey, AuthorizedKeys: f.fullFile, ReadOnlyKeys: f.roFile, MaxSessions: 10}
	if mutate != nil {
		mutate(&f.serverCfg)
	}
	f.serve(t)
	return f
}

func (f *fixture) serve(t *testing.T) {
	t.Helper()
	srv, err := sshserve.Listen(sshserve.Options{
		SSH:              f.serverCfg,
		HandshakeTimeout: f.handshake,
		Log:              slog.New(slog.NewTextHandler(f.log, nil)),
		Model:            func(s sshserve.Session) tea.Model { return &echo{s: s} },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.addr = srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- srv.Serve(ctx) }()
	t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSessionsHaveTheirOwnSizeEnvAndRole(t *testing.T) {
	f := start(t, nil)
	a := sshtest.Open(t, f.addr, f.full, sshtest.Options{User: "alice"})
	b := sshtest.Open(t, f.addr, f.ro, sshtest.Options{User: "bob", Width: 100, Height: 30, Env: map[string]string{"NO_COLOR": "1"}, Term: "dumb"})
	a.WaitFor(t, 5*time.Second, "size 80x24", "user alice ro=false", `no_color="" term="xterm-256color"`)
	b.WaitFor(t, 5*time.Second, "size 100x30", "user bob ro=true", `no_color="1" term="dumb"`)
	// A resize reaches only its own session.
	if err := a.Sess.WindowChange(30, 90); err != nil {
		t.Fatal(err)
	}
	a.WaitFor(t, 5*time.Second, "size 90x30")
	b.WaitFor(t, time.Second, "size 100x30")
	a.Type("q")
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("q did not end the session")
	}
	log := f.log.String()
	for _, want := range []string{
		"ssh session opened", "user=alice", "key=" + f.full.Fingerprint(), "key_comment=ops@laptop", "read_only=false",
		"user=bob", "key=" + f.ro.Fingerprint(), "read_only=true", "ssh session closed",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestOnlyListedKeysLogIn(t *testing.T) {
	f := start(t, nil)
	stranger := sshtest.NewKey(t, "stranger")
	if _, err := sshtest.TryOpen(f.addr, stranger, sshtest.Options{}); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("unknown key: %v, want refused", err)
	}
	if !strings.Contains(f.log.String(), "ssh key refused") || !strings.Contains(f.log.String(), stranger.Fingerprint()) {
		t.Errorf("refusal not logged with the fingerprint:\n%s", f.log.String())
	}
	// No password is accepted, not even with a listed key's user.
	_, err := gossh.Dial("tcp", f.addr, sshtest.ClientConfig("pgreplica", nil, gossh.Password("pgreplica"),
		gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return []string{"pgreplica"}, nil })))
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("password: %v, want refused", err)
	}

	// The files are read at each login: a key removed is refused, a key
	// added is accepted, without a restart.
	x := sshtest.Open(t, f.addr, f.ro, sshtest.Options{})
	x.WaitFor(t, 5*time.Second, "ro=true")
	write(t, f.roFile, "")
	if _, err := sshtest.TryOpen(f.addr, f.ro, sshtest.Options{}); err == nil {
		t.Fatal("a key removed from read_only_keys still logs in")
	}
	write(t, f.fullFile, f.full.Line+stranger.Line)
	y := sshtest.Open(t, f.addr, stranger, sshtest.Options{})
	y.WaitFor(t, 5*time.Second, "ro=false")
	// A key in both files is read-only.
	write(t, f.roFile, stranger.Line)
	z := sshtest.Open(t, f.addr, stranger, sshtest.Options{})
	z.WaitFor(t, 5*time.Second, "ro=true")
}

func TestSessionLimit(t *testing.T) {
	f := start(t, func(c *config.SSH) { c.MaxSessions = 1 })
	a := sshtest.Open(t, f.addr, f.full, sshtest.Options{})
	a.WaitFor(t, 5*time.Second, "size 80x24")
	b := sshtest.Open(t, f.addr, f.full, sshtest.Options{})
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("a session past max_sessions was not ended: %q\n%s", b.Raw(), f.log.String())
	}
	if !strings.Contains(b.Raw(), "1 sessions are open already (serve.ssh.max_sessions)") {
		t.Errorf("refused session said %q", b.Raw())
	}
	if e, ok := b.Err().(*gossh.ExitError); !ok || e.ExitStatus() != 1 {
		t.Errorf("refused session: %v, want exit status 1", b.Err())
	}
	// Once a has gone, a new session is let in.
	a.Close()
	eventually(t, func() bool {
		c, err := sshtest.TryOpen(f.addr, f.full, sshtest.Options{})
		if err != nil {
			return false
		}
		defer c.Close()
		select {
		case <-c.Done():
			return false
		case <-time.After(300 * time.Millisecond):
			return strings.Contains(c.Screen(), "size 80x24")
		}
	})
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal("not within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	f := start(t, func(c *config.SSH) { c.IdleTimeout = 600 * time.Millisecond })
	a := sshtest.Open(t, f.addr, f.full, sshtest.Options{})
	// Key presses keep it open past the timeout; then idle closes it.
	for range 6 {
		time.Sleep(200 * time.Millisecond)
		a.Type("x")
	}
	select {
	case <-a.Done():
		t.Fatal("a session closed while keys were pressed")
	default:
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle session not closed")
	}
	if !strings.Contains(a.Raw(), "session closed after 600ms without a key press (serve.ssh.idle_timeout)") {
		t.Errorf("idle session said %q", a.Raw())
	}
	if a.Err() != nil {
		t.Errorf("idle session: %v, want exit 0", a.Err())
	}
}

func TestHostKeyCreatedOnceAndKept(t *testing.T) {
	f := start(t, nil)
	st, err := os.Stat(f.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %04o, want 0600", st.Mode().Perm())
	}
	var first gossh.PublicKey
	x := sshtest.Open(t, f.addr, f.full, sshtest.Options{HostKey: func(_ string, _ net.Addr, k gossh.PublicKey) error { first = k; return nil }})
	x.WaitFor(t, 5*time.Second, "size")
	x.Close()
	f.stop()
	f.serve(t)
	var second gossh.PublicKey
	y := sshtest.Open(t, f.addr, f.full, sshtest.Options{HostKey: func(_ string, _ net.Addr, k gossh.PublicKey) error { second = k; return nil }})
	y.WaitFor(t, 5*time.Second, "size")
	if first == nil || second == nil || !bytes.Equal(first.Marshal(), second.Marshal()) {
		t.Fatal("the host key changed across a restart")
	}

	// A host key others can read is refused, as sshd does.
	os.Chmod(f.hostKey, 0o644)
	_, err = sshserve.Listen(sshserve.Options{SSH: f.serverCfg, Model: func(sshserve.Session) tea.Model { return nil }})
	want := fmt.Sprintf("serve.ssh.host_key %s: readable by others (mode 0644); chmod 600 %s", f.hostKey, f.hostKey)
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	// A key file that is not one is an error at start.
	write(t, f.roFile, "ssh-ed25519 not-a-key\n")
	os.Chmod(f.hostKey, 0o600)
	_, err = sshserve.Listen(sshserve.Options{SSH: f.serverCfg})
	if err == nil || !strings.HasPrefix(err.Error(), "serve.ssh.read_only_keys: "+f.roFile+":1: not a public key in authorized_keys format") {
		t.Errorf("error %v", err)
	}
}

// The server is the TUI and nothing else: no session without a terminal,
// no port forwarding, no subsystem (sftp).
func TestNothingButTheTUI(t *testing.T) {
	f := start(t, nil)
	c, err := gossh.Dial("tcp", f.addr, sshtest.ClientConfig("ops", nil, gossh.PublicKeys(f.full.Signer)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("cat /etc/passwd")
	if e, ok := err.(*gossh.ExitError); !ok || e.ExitStatus() != 1 || string(out) != "Requires an active PTY\n" {
		t.Errorf("a command without a PTY: %v %q", err, out)
	}
	if conn, err := c.Dial("tcp", f.addr); err == nil {
		conn.Close()
		t.Error("port forwarding is open")
	}
	s2, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.RequestSubsystem("sftp"); err == nil {
		t.Error("the sftp subsystem is open")
	}
}

// A connection that does not log in is dropped (it would hold a socket).
func TestHandshakeTimeout(t *testing.T) {
	f := start(t, nil)
	f.stop()
	f.handshake = 500 * time.Millisecond
	f.serve(t)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	st := time.Now()
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a connection that never logged in was kept for 5s")
			}
			break
		}
	}
	if d := time.Since(st); d < 400*time.Millisecond {
		t.Errorf("dropped after %v, before the handshake timeout", d)
	}
}
