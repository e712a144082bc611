package control

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// Anything but a socket at control.socket is refused and left intact: a
// regular file (a typo pointing at the config) and a directory.
func TestServeRefusesWhatIsNotASocket(t *testing.T) {
	cfg, err := config.FromFlags("shop", "host=127.0.0.1 port=1 dbname=x", []string{"host=127.0.0.1 port=2 dbname=y"})
	if err != nil {
		t.Fatal(err)
	}
	eng := replay.New(cfg, slog.New(slog.DiscardHandler), replay.Options{})
	src := Source{Set: "shop", Engine: eng, Log: logring.New(10)}
	dir := t.TempDir()
	file := filepath.Join(dir, "shop.yaml")
	os.WriteFile(file, []byte("name: shop\n"), 0o600)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	for path, want := range map[string]string{
		file: "control socket " + file + ": a file is there, not a socket; refusing to replace it (set control.socket to a path of its own)",
		sub:  "control socket " + sub + ": a directory is there, not a socket; refusing to replace it (set control.socket to a path of its own)",
	} {
		err := Serve(context.Background(), path, src)
		if err == nil || err.Error() != want {
			t.Errorf("Serve at %s: %v\nwant %s", path, err, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "name: shop\n" {
		t.Fatalf("the file at control.socket was changed: %q %v", b, err)
	}
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Fatalf("the directory at control.socket was changed: %v", err)
	}
}

// The socket is created with mode 0600, whatever the umask: no window in
// which others may connect.
func TestSocketCreatedPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "p.sock")
	lc := net.ListenConfig{Control: privateSocket}
	l, err := lc.Listen(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket created with mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}
