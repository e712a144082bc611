package tui

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/tui/screen"
)

// A TUI served over SSH shows its session's user and address, not this
// process's, and each size it is sent.
func TestSessionHeaderShowsWho(t *testing.T) {
	t.Setenv("USER", "host-user")
	t.Setenv("SSH_CONNECTION", "192.0.2.9 1 192.0.2.1 22")
	f := newFixture(false)
	f.env.Who = &screen.Who{User: "ops", Remote: "10.0.0.5:50022", Key: "SHA256:abc", Comment: "ops@laptop"}
	f.env.ReadOnly = true
	f.send(tea.WindowSizeMsg{Width: 80, Height: 24})
	f.load()
	out := f.root.Render()
	golden(t, "monitor-ssh-80x24", out)
	head := strings.Split(ansi.Strip(out), "\n")[0]
	if !strings.Contains(head, "ops@10.0.0.5 read-only  12:04") || ansi.StringWidth(head) != 80 {
		t.Errorf("header %q", head)
	}
	f.send(tea.WindowSizeMsg{Width: 120, Height: 40})
	lines := strings.Split(ansi.Strip(f.root.Render()), "\n")
	if len(lines) != 40 || !strings.Contains(lines[0], "shop → 2 replicas") || !strings.Contains(lines[0], "ops@10.0.0.5") {
		t.Errorf("at 120x40 the header is %q (%d lines)", lines[0], len(lines))
	}

	var buf bytes.Buffer
	f.env.Log = slog.New(slog.NewTextHandler(&buf, nil))
	f.env.Audit("tui: install capture on public.t", "table", "public.t")
	got := buf.String()
	for _, want := range []string{"user=ops", "remote=10.0.0.5:50022", "key=SHA256:abc", "key_comment=ops@laptop", "via=ssh", "read_only=true", "table=public.t"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit lacks %q: %s", want, got)
		}
	}
	if strings.Contains(got, "host-user") || strings.Contains(got, "192.0.2.9") {
		t.Errorf("audit names this process's user or ssh connection: %s", got)
	}
}
