// Package source is where the TUI's live replication state comes from: a
// replay engine run in this process, or a daemon reached through its
// control endpoint. Either way the TUI polls immutable snapshots and reads
// log records by sequence number; nothing here pushes into the UI.
package source

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/logring"
	"pgreplica/core/replay"
)

// Snapshot is the live state of replication as one value.
type Snapshot struct {
	Kind     string // "engine" (this process), "daemon", or "none"
	Running  bool
	Started  time.Time
	PID      int
	Replicas []replay.ReplicaStatus
}

// Source gives live state and logs.
type Source interface {
	Kind() string
	Snapshot(ctx context.Context) (Snapshot, error)
	// Logs returns records with a sequence number above since.
	Logs(ctx context.Context, since uint64) ([]logring.Record, error)
	// Startable reports whether Start/Stop apply (the engine in this process).
	Startable() bool
	Start() error
	// Stop stops the engine after the batch in flight and waits for it.
	Stop()
}

// Engine runs the replay engine in this process. Its log goes to the ring.
type Engine struct {
	cfg  *config.Config
	ring *logring.Ring
	log  *slog.Logger

	mu      sync.Mutex
	eng     *replay.Engine
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time
	last    []replay.ReplicaStatus
}

// NewEngine makes a stopped engine source for cfg logging into ring.
func NewEngine(cfg *config.Config, ring *logring.Ring, log *slog.Logger) *Engine {
	return &Engine{cfg: cfg, ring: ring, log: log}
}

// Kind is "engine".
func (e *Engine) Kind() string { return "engine" }

// Startable is true.
func (e *Engine) Startable() bool { return true }

// Running reports whether the engine runs.
func (e *Engine) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.eng != nil
}

// Start starts the engine; starting a running engine does nothing.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eng != nil {
		return nil
	}
	if err := e.cfg.RequireReplicas(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	eng := replay.New(e.cfg, e.log, replay.Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := eng.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			e.log.Error("engine stopped", "err", err)
		}
	}()
	e.eng, e.cancel, e.done, e.started = eng, cancel, done, time.Now()
	return nil
}

// Stop cancels the engine and waits for the batch in flight to finish.
func (e *Engine) Stop() {
	e.mu.Lock()
	eng, cancel, done := e.eng, e.cancel, e.done
	e.mu.Unlock()
	if eng == nil {
		return
	}
	cancel()
	<-done
	e.mu.Lock()
	e.last = eng.Status()
	e.eng = nil
	e.mu.Unlock()
}

// Snapshot is the engine's current status.
func (e *Engine) Snapshot(context.Context) (Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Snapshot{Kind: "engine", Running: e.eng != nil, Started: e.started}
	if e.eng != nil {
		s.Replicas = e.eng.Status()
	} else {
		s.Replicas = e.last
	}
	return s, nil
}

// Logs reads the ring.
func (e *Engine) Logs(_ context.Context, since uint64) ([]logring.Record, error) {
	return e.ring.Since(since, 1000), nil
}

// DaemonClient is the part of the control endpoint's client the TUI uses
// (core/control's Client satisfies it).
type DaemonClient interface {
	Status(ctx context.Context) (control.Status, error)
	Logs(ctx context.Context, since uint64) ([]logring.Record, error)
}

// Daemon attaches to a running daemon.
type Daemon struct {
	Client DaemonClient
	// Ring keeps the TUI's own records (audit lines); they are merged
	// into nothing: the log pane shows the daemon's log.
}

// Kind is "daemon".
func (d *Daemon) Kind() string { return "daemon" }

// Startable is false: systemd runs the daemon.
func (d *Daemon) Startable() bool { return false }

// Start is not possible.
func (d *Daemon) Start() error {
	return errors.New("the engine runs in the daemon; start or stop it with systemctl")
}

// Stop does nothing: quitting the TUI leaves the daemon running.
func (d *Daemon) Stop() {}

// Snapshot asks the daemon.
func (d *Daemon) Snapshot(ctx context.Context) (Snapshot, error) {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return Snapshot{Kind: "daemon"}, err
	}
	return Snapshot{Kind: "daemon", Running: true, Started: st.Started, PID: st.PID, Replicas: st.Replicas}, nil
}

// Logs asks the daemon.
func (d *Daemon) Logs(ctx context.Context, since uint64) ([]logring.Record, error) {
	return d.Client.Logs(ctx, since)
}

// Static is a source with a fixed snapshot and records, for screens shown
// without replication (tests, read-only views).
type Static struct {
	Snap    Snapshot
	Records []logring.Record
}

// Kind is the snapshot's kind.
func (s *Static) Kind() string { return s.Snap.Kind }

// Startable is false.
func (s *Static) Startable() bool { return false }

// Start is not possible.
func (s *Static) Start() error { return errors.New("no engine here") }

// Stop does nothing.
func (s *Static) Stop() {}

// Snapshot returns the fixed snapshot.
func (s *Static) Snapshot(context.Context) (Snapshot, error) { return s.Snap, nil }

// Logs returns the fixed records after since.
func (s *Static) Logs(_ context.Context, since uint64) ([]logring.Record, error) {
	var out []logring.Record
	for _, r := range s.Records {
		if r.Seq > since {
			out = append(out, r)
		}
	}
	return out, nil
}
