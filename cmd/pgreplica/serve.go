package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"

	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/logring"
	"pgreplica/core/replay"
	"pgreplica/tui"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
	"pgreplica/tui/sshserve"
	"pgreplica/tui/theme"
)

type serveOptions struct {
	ssh string
	run runOptions
}

func (a *app) serveCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the TUI over SSH to operators' keys, one engine for all",
		Long: `Serves the terminal UI over SSH: 'ssh -p 2222 pgreplica@HOST' lands in the
monitor, with no shell on the host. Every session gets its own TUI, sized to
its own terminal and coloured for it (NO_COLOR or TERM=dumb sent by the
client are honoured), with its user and address in the header.

Only public keys are accepted, never passwords. Keys in
serve.ssh.authorized_keys get the whole TUI; keys in serve.ssh.read_only_keys
get it read-only (no install, no remove, nothing that changes a database).
Both files are read again at every login: a key removed from them is refused
at its next login, without a restart. The host key (serve.ssh.host_key) is
created on the first start and kept. Every session and every action is
logged with the key's fingerprint and the user.

All sessions show one engine: with control.socket set and a daemon
answering there, serve attaches to that daemon; otherwise serve runs the
replay engine itself, once, as 'pgreplica run --daemon' does (and stops it
on SIGTERM after the batch in flight). 'pgreplica run --daemon --serve-ssh
ADDR' does the same in a systemd unit.`,
		Example: `  pgreplica -c /etc/pgreplica/shop.yaml serve --ssh 127.0.0.1:2222
  ssh -p 2222 pgreplica@127.0.0.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ssh, "ssh", "", "serve the TUI over SSH on HOST:PORT (default serve.ssh.listen)")
	f.StringVar(&o.run.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.run.logFile, "log-file", "", "append logs to FILE instead of standard error")
	f.StringVar(&o.run.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func (a *app) serve(ctx context.Context, o serveOptions) error {
	cfg, err := a.loadConfigWithReplicas()
	if err != nil {
		return err
	}
	addr := o.ssh
	if addr == "" {
		addr = cfg.Serve.SSH.Listen
	}
	if addr == "" {
		return usagef("nothing to serve: pass --ssh HOST:PORT or set serve.ssh.listen in %s", cfg.Path)
	}
	src := daemonSource(ctx, cfg)
	if src == nil {
		// No daemon: this process runs the engine, once, for every session.
		o.run.daemon, o.run.serveSSH = true, addr
		return a.runEngine(ctx, o.run)
	}
	log, _, err := a.daemonLogger(o.run)
	if err != nil {
		return err
	}
	log.Info("attaching the ssh sessions to the daemon", "socket", cfg.Control.Socket)
	srv, err := listenSSH(cfg, addr, log, src, func() *config.Config { return cfg })
	if err != nil {
		return err
	}
	// The daemon reloads itself; SIGHUP must not end the sessions here.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: nothing to reload here; the sessions show the daemon, which reloads on its own SIGHUP")
		}
	}()
	return srv.Serve(ctx)
}

// listenSSH binds the SSH server whose sessions show src; cfg gives the
// configuration of each new session (the current one after a reload).
func listenSSH(cfg *config.Config, addr string, log *slog.Logger, src source.Source, current func() *config.Config) (*sshserve.Server, error) {
	sc := cfg.Serve.SSH.Resolve(cfg.Path)
	sc.Listen = addr
	report := &sharedReport{cfg: current}
	return sshserve.Listen(sshserve.Options{
		SSH:     sc,
		Log:     log,
		Version: version,
		Model: func(s sshserve.Session) tea.Model {
			return sessionModel(s, current(), src, report.get, log)
		},
	})
}

// sessionModel is the TUI of one SSH session: its own theme from the
// client's environment, its own size (from the program's messages), the
// shared source and report.
func sessionModel(s sshserve.Session, cfg *config.Config, src source.Source, report func(context.Context) (replay.Report, error), log *slog.Logger) *tui.Model {
	mono, ascii := theme.Detect("auto", s.Getenv)
	return tui.NewApp(tui.AppOptions{
		Config:   cfg,
		Theme:    theme.New(mono, ascii),
		ReadOnly: s.ReadOnly,
		Version:  version,
		Log:      log,
		Source:   src,
		Report:   report,
		Who:      &screen.Who{User: s.User, Remote: s.Remote, Key: s.Key, Comment: s.Comment},
	})
}

// sharedReport reads the databases' status for every session at most once
// a second, so N sessions do not cost N times the queries.
type sharedReport struct {
	cfg func() *config.Config

	mu  sync.Mutex
	at  time.Time
	rep replay.Report
	err error
}

func (r *sharedReport) get(ctx context.Context) (replay.Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.at) < time.Second {
		return r.rep, r.err
	}
	r.rep, r.err = replay.QueryStatus(ctx, r.cfg())
	r.at = time.Now()
	return r.rep, r.err
}

// localEngine is the engine of this process as the TUI sees a daemon: the
// SSH sessions of `run --daemon --serve-ssh` and `serve` read it like the
// control socket, and none of them can stop it.
type localEngine struct {
	ring *logring.Ring

	mu  sync.Mutex
	set string
	eng *replay.Engine
}

// use makes eng (after a reload: the new one) what the sessions show.
func (l *localEngine) use(set string, eng *replay.Engine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set, l.eng = set, eng
}

func (l *localEngine) Status(context.Context) (control.Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.eng == nil {
		return control.Status{}, errors.New("the engine is not started yet")
	}
	return control.Status{Set: l.set, PID: os.Getpid(), Started: l.eng.Started(), Replicas: l.eng.Status()}, nil
}

// Retry makes replica try again now, as the control endpoint does.
func (l *localEngine) Retry(_ context.Context, replica string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.eng == nil {
		return errors.New("the engine is not started yet")
	}
	if !l.eng.Retry(replica) {
		return fmt.Errorf("no replica %s in the engine", replica)
	}
	return nil
}

// Logs waits up to 10s for a record newer than since, as the control
// endpoint does.
func (l *localEngine) Logs(ctx context.Context, since uint64) ([]logring.Record, error) {
	if l.ring.Last() <= since {
		select {
		case <-l.ring.Changed():
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.ring.Since(since, 1000), nil
}
