package control

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/logring"
	"pgreplica/core/replay"
)

func TestServeStatusAndLogs(t *testing.T) {
	cfg, err := config.FromFlags("shop", "host=127.0.0.1 port=1 dbname=x", []string{"host=127.0.0.1 port=2 dbname=y"})
	if err != nil {
		t.Fatal(err)
	}
	ring := logring.New(10)
	log := slog.New(ring.Handler(slog.LevelInfo))
	eng := replay.New(cfg, log, replay.Options{})
	sock := filepath.Join(t.TempDir(), "c.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, Source{Set: "shop", Engine: eng, Log: ring}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Error("socket file left behind")
		}
	}()
	c := Dial(sock)
	var st Status
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, err = c.Status(ctx); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if st.Set != "shop" || st.PID != os.Getpid() || len(st.Replicas) != 1 || st.Replicas[0].Name != "replica" {
		t.Fatalf("status = %+v", st)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	log.Info("batch applied", "replica", "replica", "events", 3)
	recs, err := c.Logs(ctx, 0)
	if err != nil || len(recs) != 1 || recs[0].Message != "batch applied" || recs[0].Get("events") != "3" {
		t.Fatalf("logs = %+v, %v", recs, err)
	}
	// A second daemon on the same socket is refused.
	err = Serve(ctx, sock, Source{Set: "shop", Engine: eng, Log: ring})
	if err == nil || !strings.Contains(err.Error(), "another pgreplica daemon is listening there") {
		t.Fatalf("second Serve: %v", err)
	}
}
