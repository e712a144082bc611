// Package sshtest is a real SSH client for tests of the TUI served over
// SSH: it logs in with golang.org/x/crypto/ssh, asks for a PTY and feeds
// what the server draws into a terminal emulator (charmbracelet/x/vt), so
// tests assert on the screen a user would see. Only tests import it.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	gossh "golang.org/x/crypto/ssh"
)

// Key is a fresh ed25519 key pair.
type Key struct {
	Signer gossh.Signer
	// Line is the public key as a line of an authorized_keys file.
	Line string
}

// NewKey makes a key whose authorized_keys line ends with comment.
func NewKey(t testing.TB, comment string) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey()))) + " " + comment + "\n"
	return Key{Signer: s, Line: line}
}

// Fingerprint is the key's SHA256 fingerprint, as servers log it.
func (k Key) Fingerprint() string { return gossh.FingerprintSHA256(k.Signer.PublicKey()) }

// Options of a terminal session.
type Options struct {
	User          string // default "pgreplica"
	Term          string // default xterm-256color
	Width, Height int    // default 80x24
	Env           map[string]string
	// HostKey checks the server's key; nil accepts any.
	HostKey gossh.HostKeyCallback
}

// ClientConfig is the client side of a login with key.
func ClientConfig(user string, hostKey gossh.HostKeyCallback, auth ...gossh.AuthMethod) *gossh.ClientConfig {
	if hostKey == nil {
		hostKey = gossh.InsecureIgnoreHostKey()
	}
	return &gossh.ClientConfig{User: user, Auth: auth, HostKeyCallback: hostKey, Timeout: 5 * time.Second}
}

// Term is one SSH session with a PTY, drawn into an emulator.
type Term struct {
	Client *gossh.Client
	Sess   *gossh.Session
	emu    *vt.SafeEmulator
	stdin  io.WriteCloser

	// emuMu guards the emulator's cells between its writes and Screen
	// (CellAt hands out pointers into the live buffer).
	emuMu sync.Mutex

	mu   sync.Mutex
	raw  bytes.Buffer
	done chan struct{}
	err  error
}

// Open logs in with key and starts a shell on a PTY.
func Open(t testing.TB, addr string, key Key, o Options) *Term {
	t.Helper()
	x, err := TryOpen(addr, key, o)
	if err != nil {
		t.Fatalf("ssh %s: %v", addr, err)
	}
	t.Cleanup(x.Close)
	return x
}

// TryOpen is Open returning the error of the login or of the session.
func TryOpen(addr string, key Key, o Options) (*Term, error) {
	if o.User == "" {
		o.User = "pgreplica"
	}
	if o.Term == "" {
		o.Term = "xterm-256color"
	}
	if o.Width == 0 {
		o.Width, o.Height = 80, 24
	}
	c, err := gossh.Dial("tcp", addr, ClientConfig(o.User, o.HostKey, gossh.PublicKeys(key.Signer)))
	if err != nil {
		return nil, err
	}
	s, err := c.NewSession()
	if err != nil {
		c.Close()
		return nil, err
	}
	for k, v := range o.Env {
		if err := s.Setenv(k, v); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := s.RequestPty(o.Term, o.Height, o.Width, gossh.TerminalModes{}); err != nil {
		c.Close()
		return nil, err
	}
	x := &Term{Client: c, Sess: s, emu: vt.NewSafeEmulator(o.Width, o.Height), done: make(chan struct{})}
	x.stdin, err = s.StdinPipe()
	if err != nil {
		c.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		c.Close()
		return nil, err
	}
	s.Stderr = x
	if err := s.Shell(); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		io.Copy(x, out)
		err := s.Wait() // waits for stderr, which takes x.mu: not under it
		x.mu.Lock()
		x.err = err
		x.mu.Unlock()
		close(x.done)
	}()
	// What the emulator answers (the program's terminal queries) goes
	// back to the server, as a real terminal's answers do.
	go io.Copy(x.stdin, x.emu)
	return x, nil
}

// Write receives what the server sends.
func (x *Term) Write(p []byte) (int, error) {
	x.mu.Lock()
	x.raw.Write(p)
	x.mu.Unlock()
	x.emuMu.Lock()
	defer x.emuMu.Unlock()
	return x.emu.Write(p)
}

// Screen is the emulator's screen as text, one line per row.
func (x *Term) Screen() string {
	x.emuMu.Lock()
	defer x.emuMu.Unlock()
	var rows []string
	for y := 0; y < x.emu.Height(); y++ {
		var sb strings.Builder
		for cx := 0; cx < x.emu.Width(); cx++ {
			c := x.emu.CellAt(cx, y)
			switch {
			case c == nil:
				sb.WriteByte(' ')
			case c.Content == "":
				if c.Width == 0 {
					continue // the tail of a wide character
				}
				sb.WriteByte(' ')
			default:
				sb.WriteString(c.Content)
			}
		}
		rows = append(rows, sb.String())
	}
	return strings.Join(rows, "\n")
}

// Raw is every byte the server sent so far.
func (x *Term) Raw() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.raw.String()
}

// WaitFor waits until the screen shows every text and returns it.
func (x *Term) WaitFor(t testing.TB, timeout time.Duration, texts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := x.Screen()
		ok := true
		for _, want := range texts {
			if !strings.Contains(s, want) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("screen never showed %q within %v:\n%s", texts, timeout, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Type sends keys as the terminal would.
func (x *Term) Type(s string) {
	x.stdin.Write([]byte(s))
}

// Done closes when the session ends; Err is then its exit error.
func (x *Term) Done() <-chan struct{} { return x.done }

// Err is the session's end (nil: exit status 0).
func (x *Term) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Close ends the session and the connection.
func (x *Term) Close() {
	x.Sess.Close()
	x.Client.Close()
}
