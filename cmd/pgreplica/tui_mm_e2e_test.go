package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The TUI on a multi-master set, at 80x24 in a real terminal: the monitor
// shows one row per direction (read from the databases, no engine
// running), the tables screen lists the node's tables without install or
// remove keys, and the conflicts screen opens.
func TestTUIMultiMasterSet(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is not installed: this test drives the TUI in a real terminal (scripts/test.sh installs it; apt-get install -y tmux)")
	}
	cfg, a, _ := nodesConfig(t, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
	if _, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %s", errOut)
	}
	execSQL(t, a, "INSERT INTO orders VALUES (1, 'on a')")

	x := &tmux{t: t, name: fmt.Sprintf("pgreplica-e2e-mm-%d", os.Getpid())}
	x.run("new-session", "-d", "-s", x.name, "-x", "80", "-y", "24", "-c", t.TempDir(), "-e", "LANG=C.UTF-8",
		fmt.Sprintf("%s -c %s tui", binary(t), cfg))
	x.run("set-option", "-t", x.name, "remain-on-exit", "on")
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", x.name).Run() })

	x.keys("2")
	s := x.waitFor(20*time.Second, "a->b", "b->a")
	if strings.Contains(s, "panic") {
		t.Fatalf("monitor:\n%s", s)
	}
	x.keys("1")
	s = x.waitFor(20*time.Second, "[1 Tables]", "public.orders")
	if strings.Contains(s, "i install") || strings.Contains(s, "d remove") {
		t.Errorf("the tables screen of a multi-master set offers install or remove:\n%s", s)
	}
	x.keys("3")
	x.waitFor(10*time.Second, "[3 Conflicts")
	x.keys("q", "y")
	deadline := time.Now().Add(20 * time.Second)
	for strings.TrimSpace(x.run("display-message", "-p", "-t", x.name, "#{pane_dead}")) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("q y did not quit:\n%s", x.screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
