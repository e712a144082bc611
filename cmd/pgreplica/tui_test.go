package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/logring"
	"pgreplica/core/replay"
)

func TestTUIRefusesWithoutTerminal(t *testing.T) {
	_, stderr, code := cli(t, "", "--origin", "dbname=x", "--replica", "dbname=y", "tui")
	if code != exitUsage || !strings.Contains(stderr, "needs a terminal") {
		t.Fatalf("code %d stderr %s", code, stderr)
	}
	_, stderr, code = cli(t, "", "tui", "--color", "sometimes")
	if code != exitUsage || !strings.Contains(stderr, "--color") {
		t.Fatalf("code %d stderr %s", code, stderr)
	}
}

// TestTUIAttachesToDaemon: with control.socket set and a daemon serving
// there, the TUI's source is the daemon (status and log by sequence).
func TestTUIAttachesToDaemon(t *testing.T) {
	cfg, err := config.FromFlags("d", "host=127.0.0.1 dbname=x", []string{"host=127.0.0.1 dbname=y"})
	if err != nil {
		t.Fatal(err)
	}
	// No socket configured, or nothing listening: no daemon.
	if src := daemonSource(context.Background(), cfg); src != nil {
		t.Fatal("daemon source without a socket")
	}
	cfg.Control.Socket = filepath.Join(t.TempDir(), "control.sock")
	if src := daemonSource(context.Background(), cfg); src != nil {
		t.Fatal("daemon source with nothing listening")
	}
	ring := logring.New(100)
	log := slog.New(ring.Handler(slog.LevelInfo))
	eng := replay.New(cfg, log, replay.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go control.Serve(ctx, cfg.Control.Socket, control.Source{Set: cfg.Name, Engine: eng, Log: ring})
	log.Info("hello from the daemon", "replica", "replica")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if src := daemonSource(context.Background(), cfg); src != nil {
			if src.Kind() != "daemon" || src.Startable() {
				t.Fatalf("source %s startable %v", src.Kind(), src.Startable())
			}
			snap, err := src.Snapshot(context.Background())
			if err != nil || !snap.Running || snap.Kind != "daemon" {
				t.Fatalf("snapshot %+v %v", snap, err)
			}
			recs, err := src.Logs(context.Background(), 0)
			if err != nil || len(recs) == 0 || recs[0].Message != "hello from the daemon" {
				t.Fatalf("logs %+v %v", recs, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no daemon source while the control endpoint serves")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
