package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/logring"
	"pgreplica/core/metrics"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/tui/source"
)

type runOptions struct {
	daemon    bool
	logFormat string
	logFile   string
	logLevel  string
	serveSSH  string // also serve the TUI over SSH on this address
	node      string // multi-master: apply only into this node
}

func (a *app) runCommand() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the replay engine (foreground, or --daemon for systemd)",
		Long: `Runs the replay engine: applies every change captured on the origin to every
replica, waking on NOTIFY within milliseconds and polling every poll_interval
in case a notification is lost. Everything missed while it was down is applied
first. Connection faults are retried with backoff; it never exits on a
transient fault.

SIGTERM or SIGINT finish the batch in flight and exit 0, within
min(10s, timeouts.dead_path) even when a server no longer answers (an
unfinished batch is rolled back and applied at the next start). SIGHUP
reloads the config file (and reopens --log-file, for logrotate); an invalid
new config is logged and the running one kept. With control.socket set, the daemon serves
its status and log there for 'pgreplica status' and the TUI (and takes
'pgreplica retry'). With --serve-ssh HOST:PORT the same process serves the
TUI over SSH, every session on this engine (see 'pgreplica serve --help' and
serve.ssh in the config). With alerts: set it sends e-mail and webhook alerts
(engine started/stopped, a replica stopped, unreachable, behind, new
conflicts, and when each clears); with metrics.listen set it serves
/metrics, /healthz and /readyz there (an address in use is an error).

On a multi-master set (nodes:) the engine drives every direction: each
node's changes applied to every other node. With --node NAME it applies only
into that node, for a daemon per node (nodes in different places).

One engine applies a set to a replica at a time (an advisory lock on the
replica). A second daemon on the same config waits as a standby and takes
over within seconds when the first stops or dies: run one on each of two
hosts for high availability.`,
		Example: `  pgreplica -c /etc/pgreplica/shop.yaml run
  pgreplica -c /etc/pgreplica/shop.yaml run --daemon --log-format json
  # multi-master: apply into node paris only
  pgreplica -c /etc/pgreplica/mesh.yaml run --daemon --node paris
  systemctl enable --now pgreplica   # see scripts/pgreplica.service`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runEngine(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.daemon, "daemon", false, "run headless for systemd (plain logs, no terminal assumed)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logFile, "log-file", "", "append logs to FILE instead of standard error")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.serveSSH, "serve-ssh", "", "also serve the TUI over SSH on HOST:PORT (see pgreplica serve --help)")
	f.StringVar(&o.node, "node", "", "multi-master set: apply only the changes into this node (a daemon per node)")
	return cmd
}

// logSink is where the daemon's log goes: stderr or a file reopened on SIGHUP.
type logSink struct {
	path string
	file *os.File
	w    io.Writer
}

func (s *logSink) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *logSink) reopen() error {
	if s.path == "" {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	old := s.file
	s.file, s.w = f, f
	if old != nil {
		old.Close()
	}
	return nil
}

// daemonLogger is the log of the daemon: text or JSON lines to stderr or
// --log-file.
func (a *app) daemonLogger(o runOptions) (*slog.Logger, *logSink, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, nil, usagef("--log-level: %v", err)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, nil, usagef("--log-format must be text or json (got %q)", o.logFormat)
	}
	sink := &logSink{path: o.logFile, w: a.stderr}
	if err := sink.reopen(); err != nil {
		return nil, nil, err
	}
	hopts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(sink, hopts)), sink, nil
	}
	return slog.New(slog.NewTextHandler(sink, hopts)), sink, nil
}

func (a *app) runEngine(ctx context.Context, o runOptions) error {
	plain, sink, err := a.daemonLogger(o)
	if err != nil {
		return err
	}
	ring := logring.New(2000)
	log := slog.New(slog.NewMultiHandler(plain.Handler(), ring.Handler(slog.LevelInfo)))

	cfg, err := a.loadConfigWithReplicas()
	if err != nil {
		return err
	}
	if o.node != "" {
		if !cfg.MultiMaster() {
			return usagef("--node is for a multi-master set (nodes: in the config); %s has origin: and replicas:", cfg.Path)
		}
		if _, err := cfg.Node(o.node); err != nil {
			return usagef("--node: %v", err)
		}
	}
	if cfg.Control.Socket != "" {
		if err := control.Check(cfg.Control.Socket); err != nil {
			return err
		}
	}
	// The TUI over SSH: one server for the life of the process, whose
	// sessions all show the engine running here (the new one after a reload).
	local := &localEngine{ring: ring}
	var current struct {
		sync.Mutex
		cfg *config.Config
	}
	current.cfg = cfg
	if o.serveSSH != "" {
		srv, err := listenSSH(cfg, o.serveSSH, log, &source.Daemon{Client: local}, func() *config.Config {
			current.Lock()
			defer current.Unlock()
			return current.cfg
		})
		if err != nil {
			return err
		}
		sshCtx, stopSSH := context.WithCancel(ctx)
		sshDone := make(chan struct{})
		go func() {
			defer close(sshDone)
			if err := srv.Serve(sshCtx); err != nil {
				log.Error("ssh server", "err", err.Error())
			}
		}()
		defer func() { stopSSH(); <-sshDone }()
	}
	if err := preflight(ctx, cfg, log); err != nil {
		return err
	}

	// The metrics address is taken before anything starts: one in use is
	// an error at once, not a log line.
	var ml net.Listener
	if cfg.Metrics.Listen != "" {
		if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			return err
		}
	}
	alerts := &alerting{log: log}
	if err := alerts.start(cfg); err != nil {
		if ml != nil {
			ml.Close()
		}
		return err
	}
	defer alerts.stop()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		engCtx, stop := context.WithCancel(ctx)
		var eng *replay.Engine
		var met *metrics.Metrics
		var alertEvents func(replay.Event)
		if alerts.alerter != nil {
			alertEvents = alerts.alerter.OnEvent
		}
		eng = replay.New(cfg, log, replay.Options{Node: o.node, OnEvent: onEvents(alertEvents, func(ev replay.Event) {
			if met != nil {
				met.OnEvent(ev)
			}
		})})
		local.use(cfg.Name, eng)
		met = metrics.New(cfg, eng, log)
		if ml == nil && cfg.Metrics.Listen != "" {
			if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
				log.Error("metrics endpoint", "err", err.Error())
			}
		}
		waitWatch := watch(engCtx, cfg, eng, alerts.alerter, met, ml, log)
		ml = nil // Serve closes it
		// done closes when the engine and its control endpoint have both
		// ended (the endpoint removes its socket file: it must be gone before
		// a reloaded one creates it again).
		done := make(chan struct{})
		var wg sync.WaitGroup
		if cfg.Control.Socket != "" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := control.Serve(engCtx, cfg.Control.Socket, control.Source{Set: cfg.Name, Engine: eng, Log: ring}); err != nil {
					log.Error("control endpoint", "err", err.Error())
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			eng.Run(engCtx)
		}()
		go func() { wg.Wait(); waitWatch(); close(done) }()
		// Wait for the end, or for a SIGHUP with a valid config.
		for reload := false; !reload; {
			select {
			case <-ctx.Done():
				<-done
				stop()
				return nil
			case <-hup:
				if err := sink.reopen(); err != nil {
					log.Error("reopen log file", "err", err.Error())
				}
				next, err := a.loadConfigWithReplicas()
				if err != nil {
					log.Error("reload failed; keeping the running config", "err", oneLine(err))
					continue
				}
				log.Info("reloading config", "path", next.Path)
				cfg, reload = next, true
				current.Lock()
				current.cfg = next
				current.Unlock()
			}
		}
		stop()
		<-done
		alerts.reload(cfg)
	}
}

// preflight stops the daemon at once, with one clear line, on what no
// retry can cure: pgreplica not installed on the origin. An unreachable
// server is not fatal: the engine retries.
func preflight(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if cfg.MultiMaster() {
		for _, d := range cfg.Directions("") {
			if err := preflight(ctx, d, log.With("node", d.Source)); err != nil {
				return fmt.Errorf("node %s: %w", d.Source, err)
			}
		}
		return nil
	}
	net := pg.NetOf(cfg)
	ctx, cancel := context.WithTimeout(ctx, net.ConnectTimeout+net.DeadPath)
	defer cancel()
	conn, err := pg.ConnectOrigin(ctx, cfg, "")
	if err != nil {
		log.Warn("origin unreachable at start; retrying", "err", err.Error())
		return nil
	}
	defer conn.Close(ctx)
	v, err := capture.SchemaVersion(ctx, conn)
	if err != nil {
		if ctx.Err() != nil {
			log.Warn("origin does not answer at start; retrying", "err", err.Error())
			return nil
		}
		return err
	}
	if v == "" {
		return withHint(errors.New("pgreplica is not installed on the origin "+config.Describe(cfg.Origin.DSN)),
			"pgreplica install (or pgreplica sync --schema for a new replica)")
	}
	return nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func (a *app) replicateCommand() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "replicate",
		Short: "Apply everything pending to every replica, then exit",
		Long: `Applies every change committed on the origin so far to every replica and exits
(rserv's Replicate): exit 0 when all replicas are caught up, 1 when a replica
could not be brought up to date (the error says which and why).`,
		Example: "  pgreplica -c shop.yaml replicate --once",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			eng := replay.New(cfg, a.logger(slog.LevelWarn), replay.Options{})
			n, err := eng.Once(cmd.Context())
			if err != nil {
				return err
			}
			caught := fmt.Sprintf("%d replica(s)", len(cfg.Connected())) // file replicas: export
			if cfg.MultiMaster() {
				caught = fmt.Sprintf("%d direction(s)", len(eng.Status()))
			}
			fmt.Fprintf(a.stdout, "applied %d events; %s caught up\n", n, caught)
			return nil
		},
	}
	cmd.Flags().BoolVar(&once, "once", true, "apply what is pending and exit (the only mode; 'run' keeps going)")
	return cmd
}

func (a *app) purgeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "purge",
		Short: "Remove events every replica has applied from the origin's log",
		Long: `Reads each replica's position, records it on the origin and removes from the
origin's log the events that every replica has applied (rserv's CleanLog).
The engine does this every purge.interval by itself. A replica that cannot be
reached keeps its last recorded position, so nothing it still needs is removed.`,
		Example: "  pgreplica -c shop.yaml purge",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			res, err := replay.PurgeNow(cmd.Context(), cfg, func(name string, err error) {
				fmt.Fprintf(a.stderr, "replica %s: %v (its last recorded position is kept)\n", name, err)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "purged %d events (%d by truncating a log table, %d deleted); %d kept for replicas behind\n",
				res.Truncated+res.Deleted, res.Truncated, res.Deleted, res.Kept)
			for _, s := range res.Holding {
				fmt.Fprintf(a.stdout, "note: replica %s is registered on the origin but not in the config; it holds back the purge\n", s)
			}
			return nil
		},
	}
}
