package control

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/logring"
	"pgreplica/core/replay"
)

func TestRetry(t *testing.T) {
	cfg, err := config.FromFlags("shop", "host=127.0.0.1 port=1 dbname=x", []string{"host=127.0.0.1 port=2 dbname=y"})
	if err != nil {
		t.Fatal(err)
	}
	ring := logring.New(10)
	eng := replay.New(cfg, slog.New(slog.DiscardHandler), replay.Options{})
	sock := filepath.Join(t.TempDir(), "c.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, Source{Set: "shop", Engine: eng, Log: ring}) }()
	defer func() { cancel(); <-done }()
	c := Dial(sock)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err = c.Retry(ctx, "replica"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	err = c.Retry(ctx, "nope")
	if want := "daemon at " + sock + `: 404 Not Found: unknown replica "nope"`; err == nil || err.Error() != want {
		t.Fatalf("Retry(nope) = %v, want %q", err, want)
	}
}
