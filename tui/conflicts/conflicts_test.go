package conflicts

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"pgreplica/core/config"
	"pgreplica/core/conflict"
	"pgreplica/core/pg"
	"pgreplica/tui/screen"
	"pgreplica/tui/theme"
)

var now = time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)

func mmEnv(readOnly bool) *screen.Env {
	cfg := config.Default()
	cfg.Name = "mesh"
	cfg.Nodes = []config.Node{{Name: "a", DSN: "host=db1"}, {Name: "b", DSN: "host=db2"}}
	return &screen.Env{Theme: theme.New(true, false), Config: &cfg, ReadOnly: readOnly, Now: func() time.Time { return now }}
}

func mmConflict() Conflict {
	return Conflict{Replica: "a->b", ID: 7, EventID: 42, Txid: "900", Table: pg.Table{Schema: "public", Name: "orders"}, Op: "U",
		Key: `{"id": 2}`, Data: `{"id": 2, "note": "from a", "qty": 3}`, Kind: "update_origin_differs", At: now.Add(-time.Minute),
		LocalRow: `{"id": 2, "note": "from b", "qty": 3}`, LocalVersion: `{"c": 2, "g": 2, "n": "b"}`, RemoteVersion: `{"c": 1, "g": 2, "n": "a"}`,
		Winner: `{"c": 2, "g": 2, "n": "b"}`, Policy: "latest", Outcome: "kept"}
}

func keyPress(s string) tea.KeyPressMsg {
	if s == "enter" {
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	}
	return tea.KeyPressMsg{Code: rune(s[0]), Text: s}
}

// The conflicts screen at 80×24 (a body of 19 lines) shows a multi-master
// conflict's two rows side by side with its outcome, and offers the same
// reviews as pgreplica conflicts resolve: o asks, enter alone does not
// confirm, y does.
func TestMultiMasterConflictSideBySideAndReview(t *testing.T) {
	var asked []string
	m := New(mmEnv(false), Deps{Resolve: func(_ context.Context, c Conflict, choice string) (string, error) {
		asked = append(asked, c.Replica+" "+choice)
		return "conflict 7 on a->b: wrote the other version", nil
	}})
	m.Update(LoadedMsg{Conflicts: []Conflict{mmConflict()}})
	view := ansi.Strip(m.View(80, 19))
	lines := strings.Split(view, "\n")
	if len(lines) != 19 {
		t.Fatalf("%d lines, want 19:\n%s", len(lines), view)
	}
	for _, l := range lines {
		if w := ansi.StringWidth(l); w > 80 {
			t.Fatalf("line wider than 80 (%d): %q", w, l)
		}
	}
	for _, want := range []string{
		"concurrent changes of a row on two nodes",
		"update_origin_differs: node b's row kept, won by b under latest",
		"a accepts it, o takes the other version",
		"COLUMN          LOCAL b",
		"REMOTE a",
	} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
	var noteLine string
	for _, l := range lines {
		if strings.Contains(l, "note") && strings.Contains(l, "from b") {
			noteLine = l
		}
	}
	if !strings.Contains(noteLine, "≠note") || !strings.Contains(noteLine, "from a") || strings.Index(noteLine, "from b") > strings.Index(noteLine, "from a") {
		t.Errorf("note not side by side (local, then remote, marked different): %q\n%s", noteLine, view)
	}
	var keys []string
	for _, k := range m.ShortHelp() {
		keys = append(keys, k.Help().Key)
	}
	if got := strings.Join(keys, " "); !strings.Contains(got, "a o") {
		t.Errorf("footer keys %q lack a and o", got)
	}

	// o asks; enter alone cancels; y confirms and runs the review.
	m.Update(keyPress("o"))
	if v := ansi.Strip(m.View(80, 19)); !strings.Contains(v, "Take the other version of id=2?") || !strings.Contains(v, "node a's change") {
		t.Fatalf("no prompt after o:\n%s", v)
	}
	m.Update(keyPress("enter"))
	if m.prompt != nil || len(asked) != 0 {
		t.Fatalf("enter confirmed the prompt: %v", asked)
	}
	m.Update(keyPress("o"))
	_, cmd := m.Update(keyPress("y"))
	if cmd == nil {
		t.Fatal("y ran nothing")
	}
	msg := cmd()
	if len(asked) != 1 || asked[0] != "a->b "+conflict.Other {
		t.Fatalf("resolve asked %v", asked)
	}
	if _, next := m.Update(msg); next == nil {
		t.Fatal("no flash after the review")
	}
	m.Update(keyPress("a"))
	if v := ansi.Strip(m.View(80, 19)); !strings.Contains(v, "Accept the outcome of conflict 7?") {
		t.Fatalf("no prompt after a:\n%s", v)
	}

	// Read-only: the reviews are not offered.
	ro := New(mmEnv(true), Deps{Resolve: func(context.Context, Conflict, string) (string, error) {
		t.Fatal("read-only resolved")
		return "", nil
	}})
	ro.Update(LoadedMsg{Conflicts: []Conflict{mmConflict()}})
	ro.Update(keyPress("o"))
	if ro.prompt != nil {
		t.Fatal("read-only opened a prompt")
	}
}
