// Package sshserve serves the TUI over SSH (Charm's wish): every session
// gets its own bubbletea program, sized to its own terminal and coloured
// for it, while the caller decides which engine every model shows. Only
// public keys listed in the configured authorized_keys files are accepted,
// read again at each login; passwords are never accepted.
package sshserve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	"charm.land/wish/v2/activeterm"
	bm "charm.land/wish/v2/bubbletea"
	gossh "golang.org/x/crypto/ssh"

	"pgreplica/core/config"
)

// Session is one client, as its model is built for it.
type Session struct {
	User     string // the SSH login name
	Remote   string // host:port of the client
	Key      string // SHA256 fingerprint of the key it logged in with
	Comment  string // the key's comment in its file
	ReadOnly bool   // the key is in read_only_keys
	// Environ is what the client sent (ssh's SendEnv, e.g. NO_COLOR) and
	// TERM of its terminal; never this process's environment.
	Environ       []string
	Width, Height int
}

// Getenv reads the session's environment.
func (s Session) Getenv(key string) string {
	v := ""
	for _, kv := range s.Environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as with a shell
		}
	}
	return v
}

// Options configure a server.
type Options struct {
	// SSH is serve.ssh with its paths resolved; Listen is the address.
	SSH config.SSH
	// Log receives the logins, the refusals and the sessions.
	Log *slog.Logger
	// Model builds the TUI of one session.
	Model func(Session) tea.Model
	// Version is sent in the SSH server version string.
	Version string
	// HandshakeTimeout drops a connection that has not logged in by then;
	// 0 is DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// DefaultHandshakeTimeout bounds the time from connect to login.
const DefaultHandshakeTimeout = 30 * time.Second

// Server is the SSH server of the TUI.
type Server struct {
	opt    Options
	srv    *ssh.Server
	ln     net.Listener
	active atomic.Int64
}

// Listen checks the options, creates the host key on first start and
// binds the address; Serve then accepts sessions.
func Listen(o Options) (*Server, error) {
	c := o.SSH
	switch {
	case c.Listen == "":
		return nil, errors.New("serve.ssh.listen: no address to listen on (set it or pass --ssh HOST:PORT)")
	case c.HostKey == "":
		return nil, errors.New("serve.ssh.host_key: no host key file")
	case c.AuthorizedKeys == "" && c.ReadOnlyKeys == "":
		return nil, errors.New("serve.ssh: neither authorized_keys nor read_only_keys is set, so every login would be refused")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	for _, f := range []struct{ field, path string }{{"authorized_keys", c.AuthorizedKeys}, {"read_only_keys", c.ReadOnlyKeys}} {
		if f.path == "" {
			continue
		}
		if _, err := readKeys(f.path); err != nil {
			return nil, fmt.Errorf("serve.ssh.%s: %w", f.field, err)
		}
	}
	if err := checkHostKey(c.HostKey); err != nil {
		return nil, err
	}
	s := &Server{opt: o}
	srv, err := wish.NewServer(
		wish.WithHostKeyPath(c.HostKey),
		wish.WithVersion("pgreplica_"+o.Version),
		wish.WithPublicKeyAuth(s.auth),
		wish.WithMiddleware(
			s.farewell,
			bm.MiddlewareWithProgramHandler(s.program),
			activeterm.Middleware(),
			s.audit,
			s.limit,
		),
	)
	if err != nil {
		return nil, fmt.Errorf("serve.ssh.host_key %s: %w", c.HostKey, err)
	}
	srv.HandshakeTimeout = o.HandshakeTimeout
	if srv.HandshakeTimeout <= 0 {
		srv.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if err := os.Chmod(c.HostKey, 0o600); err != nil {
		return nil, fmt.Errorf("serve.ssh.host_key: %w", err)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("serve.ssh.listen %s: %w", c.Listen, err)
	}
	s.srv, s.ln = srv, ln
	return s, nil
}

// checkHostKey refuses a host key others can read (as sshd does); a
// missing one is created by wish.
func checkHostKey(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve.ssh.host_key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("serve.ssh.host_key %s: readable by others (mode %04o); chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts sessions until ctx is cancelled, then closes every session.
func (s *Server) Serve(ctx context.Context) error {
	s.opt.Log.Info("serving the TUI over ssh", "listen", s.ln.Addr().String(), "authorized_keys", s.opt.SSH.AuthorizedKeys,
		"read_only_keys", s.opt.SSH.ReadOnlyKeys, "max_sessions", s.opt.SSH.MaxSessions, "idle_timeout", s.opt.SSH.IdleTimeout.String())
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			s.srv.Close()
			// Close only closes the listeners Serve has begun to track: one
			// cancelled before that would leave Serve in Accept forever.
			s.ln.Close()
		case <-done:
		}
	}()
	err := s.srv.Serve(s.ln)
	if errors.Is(err, ssh.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("ssh server: %w", err)
}

// grant is what a key may do.
type grant struct {
	ok       bool
	readOnly bool
	comment  string
}

// lookup reads both key files now and finds key: read_only_keys wins, so a
// key listed twice gets the lesser right.
func (s *Server) lookup(key ssh.PublicKey) grant {
	c := s.opt.SSH
	for _, f := range []struct {
		path     string
		readOnly bool
	}{{c.ReadOnlyKeys, true}, {c.AuthorizedKeys, false}} {
		if f.path == "" {
			continue
		}
		keys, err := readKeys(f.path)
		if err != nil {
			s.opt.Log.Warn("ssh key file unreadable; its keys are refused", "path", f.path, "err", err.Error())
			continue
		}
		for _, k := range keys {
			if ssh.KeysEqual(k.key, key) {
				return grant{ok: true, readOnly: f.readOnly, comment: k.comment}
			}
		}
	}
	return grant{}
}

func (s *Server) auth(ctx ssh.Context, key ssh.PublicKey) bool {
	g := s.lookup(key)
	if !g.ok {
		s.opt.Log.Warn("ssh key refused: not in authorized_keys nor in read_only_keys", "user", ctx.User(),
			"remote", ctx.RemoteAddr().String(), "key", gossh.FingerprintSHA256(key))
	}
	return g.ok
}

// keyLine is one key of an authorized_keys file.
type keyLine struct {
	key     ssh.PublicKey
	comment string
}

// readKeys parses an authorized_keys file; a line that is not a key is an
// error (a typo must not silently drop a key, nor grant one).
func readKeys(path string) ([]keyLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []keyLine
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not a public key in authorized_keys format: %w", path, i+1, err)
		}
		out = append(out, keyLine{key: k, comment: comment})
	}
	return out, nil
}

// state is what the middlewares of one session share.
type state struct {
	info      Session
	opened    time.Time
	lastInput atomic.Int64 // unix nanoseconds
	idled     atomic.Bool
	once      sync.Once
}

type stateKey struct{}

func sessionState(sess ssh.Session) *state {
	st, _ := sess.Context().Value(stateKey{}).(*state)
	return st
}

// limit refuses a session past serve.ssh.max_sessions.
func (s *Server) limit(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		n := s.active.Add(1)
		defer s.active.Add(-1)
		if max := s.opt.SSH.MaxSessions; max > 0 && n > int64(max) {
			s.opt.Log.Warn("ssh session refused: too many sessions", "user", sess.User(), "remote", sess.RemoteAddr().String(), "max_sessions", max)
			wish.Fatalf(sess, "pgreplica: %d sessions are open already (serve.ssh.max_sessions); try again later\r\n", max)
			return
		}
		next(sess)
	}
}

// audit decides the session's rights from the key files as they are now,
// and logs the session's start and end.
func (s *Server) audit(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		key := sess.PublicKey()
		if key == nil {
			wish.Fatalln(sess, "pgreplica: public key authentication only")
			return
		}
		g := s.lookup(key)
		if !g.ok {
			wish.Fatalln(sess, "pgreplica: this key is no longer authorized")
			return
		}
		pty, _, _ := sess.Pty()
		st := &state{opened: time.Now(), info: Session{
			User: sess.User(), Remote: sess.RemoteAddr().String(), Key: gossh.FingerprintSHA256(key), Comment: g.comment,
			ReadOnly: g.readOnly, Environ: append(sess.Environ(), "TERM="+pty.Term), Width: pty.Window.Width, Height: pty.Window.Height,
		}}
		st.lastInput.Store(time.Now().UnixNano())
		sess.Context().SetValue(stateKey{}, st)
		who := []any{"user", st.info.User, "remote", st.info.Remote, "key", st.info.Key, "key_comment", st.info.Comment, "read_only", st.info.ReadOnly}
		s.opt.Log.Info("ssh session opened", append(who, "term", pty.Term, "width", pty.Window.Width, "height", pty.Window.Height)...)
		next(sess)
		s.opt.Log.Info("ssh session closed", append(who, "duration", time.Since(st.opened).Round(time.Second).String(), "idle_timeout", st.idled.Load())...)
	}
}

// program builds the session's own bubbletea program on its own model.
func (s *Server) program(sess ssh.Session) *tea.Program {
	st := sessionState(sess)
	if st == nil {
		return nil
	}
	m := s.opt.Model(st.info)
	opts := append(bm.MakeOptions(sess), tea.WithFPS(30), tea.WithFilter(func(_ tea.Model, msg tea.Msg) tea.Msg {
		switch msg.(type) {
		case tea.SuspendMsg: // there is no shell to suspend to (as bm.MakeOptions does)
			return tea.ResumeMsg{}
		case tea.KeyPressMsg, tea.PasteMsg, tea.MouseClickMsg, tea.MouseWheelMsg:
			st.lastInput.Store(time.Now().UnixNano())
		}
		return msg
	}))
	p := tea.NewProgram(m, opts...)
	if d := s.opt.SSH.IdleTimeout; d > 0 {
		go s.watchIdle(sess.Context(), st, p, d)
	}
	return p
}

// watchIdle quits the program once no key was pressed for d.
func (s *Server) watchIdle(ctx context.Context, st *state, p *tea.Program, d time.Duration) {
	t := time.NewTicker(min(d/4+time.Millisecond, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, st.lastInput.Load())) >= d {
				st.idled.Store(true)
				p.Quit()
				return
			}
		}
	}
}

// farewell runs after the program: it says why an idle session ended.
func (s *Server) farewell(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		if st := sessionState(sess); st != nil && st.idled.Load() {
			wish.Printf(sess, "pgreplica: session closed after %s without a key press (serve.ssh.idle_timeout)\r\n", s.opt.SSH.IdleTimeout)
			_ = sess.Exit(0)
		}
		next(sess)
	}
}
