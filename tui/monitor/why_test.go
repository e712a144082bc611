package monitor

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"pgreplica/core/config"
	"pgreplica/core/replay"
	"pgreplica/tui/screen"
	"pgreplica/tui/source"
	"pgreplica/tui/theme"
)

type calls struct {
	skipped []int64
	by      string
	retried []string
}

// stopped is a monitor whose one replica is stopped by event 42.
func stopped(t *testing.T, readOnly bool) (*Model, *calls) {
	t.Helper()
	cfg := &config.Config{Name: "shop", Replicas: []config.Replica{{Name: "r1", DSN: "host=db2"}}}
	env := &screen.Env{Theme: theme.New(true, false), Config: cfg, ReadOnly: readOnly, Now: time.Now}
	m := New(env, false)
	c := &calls{}
	m.SetDeps(Deps{
		Why: func(_ context.Context, replica string) (replay.Diagnosis, error) {
			return replay.Diagnosis{Replica: replica, Pending: 3, PendingByTable: map[string]int64{"public.orders": 3},
				Failing: &replay.FailingEvent{ID: 42, Txid: 900, Table: "public.orders", Op: "INSERT", Key: `{"id": 7}`,
					Error: `duplicate key value violates unique constraint "orders_pkey"`, Behind: 2}}, nil
		},
		Skip: func(_ context.Context, _ string, id int64, by string) error {
			c.skipped = append(c.skipped, id)
			c.by = by
			return nil
		},
		Retry: func(_ context.Context, r string) error { c.retried = append(c.retried, r); return nil },
	})
	m.Update(screen.StatusMsg{Snap: source.Snapshot{Kind: "daemon", Running: true,
		Replicas: []replay.ReplicaStatus{{Name: "r1", State: replay.Stopped, Err: "replica r1: INSERT into public.orders (event 42): duplicate key"}}}})
	return m, c
}

// run executes cmd and feeds what it returns back, as the program would.
func run(m *Model, cmd tea.Cmd) tea.Msg {
	if cmd == nil {
		return nil
	}
	msg := cmd()
	if b, ok := msg.(tea.BatchMsg); ok {
		var last tea.Msg
		for _, c := range b {
			if c != nil {
				last = run(m, c)
			}
		}
		return last
	}
	if _, ok := msg.(whyMsg); ok {
		_, next := m.Update(msg)
		return run(m, next)
	}
	return msg
}

func press(m *Model, keys ...string) tea.Cmd {
	var cmd tea.Cmd
	for _, k := range keys {
		var r rune
		for _, c := range k {
			r = c
		}
		msg := tea.KeyPressMsg{Code: r, Text: k}
		if k == "enter" {
			msg = tea.KeyPressMsg{Code: tea.KeyEnter}
		}
		_, cmd = m.Update(msg)
	}
	return cmd
}

// s on a stopped replica asks for the failing event's number: enter alone
// does not confirm, a wrong number does not either, the right one skips.
func TestSkipAsksForTheEventNumber(t *testing.T) {
	m, c := stopped(t, false)
	run(m, press(m, "s"))
	if m.prompt == nil || m.prompt.Level != 3 || m.prompt.Expect != "42" {
		t.Fatalf("s opened %+v, want a typed prompt for event 42", m.prompt)
	}
	if !strings.Contains(strings.Join(m.prompt.Body, " "), "INSERT public.orders key {\"id\": 7} will never be applied there") {
		t.Fatalf("the prompt does not say what is skipped: %q", m.prompt.Body)
	}
	run(m, press(m, "enter"))
	if len(c.skipped) != 0 {
		t.Fatal("enter alone skipped the event")
	}
	if m.prompt == nil {
		t.Fatal("enter alone closed the prompt")
	}
	run(m, press(m, "4", "3", "enter"))
	if len(c.skipped) != 0 {
		t.Fatal("a wrong number skipped the event")
	}
	m, c = stopped(t, false)
	run(m, press(m, "s"))
	msg := run(m, press(m, "4", "2", "enter"))
	if len(c.skipped) != 1 || c.skipped[0] != 42 || !strings.Contains(c.by, "(tui)") {
		t.Fatalf("skipped %v by %q", c.skipped, c.by)
	}
	if f, ok := msg.(screen.FlashMsg); !ok || !strings.Contains(f.Text, "skipped event 42 on r1") {
		t.Fatalf("after the skip: %#v", msg)
	}
}

func TestRetryAndDetailShowsWhy(t *testing.T) {
	m, c := stopped(t, false)
	msg := run(m, press(m, "R"))
	if len(c.retried) != 1 || c.retried[0] != "r1" {
		t.Fatalf("retried %v", c.retried)
	}
	if f, ok := msg.(screen.FlashMsg); !ok || f.Text != "r1 is retrying now" {
		t.Fatalf("after R: %#v", msg)
	}
	run(m, press(m, "enter"))
	_, text, ok := m.Detail()
	body := strings.Join(text, "\n")
	if !ok || !strings.Contains(body, `refused   event 42 (txid 900) INSERT public.orders key {"id": 7}`) ||
		!strings.Contains(body, "behind it 2 events") || !strings.Contains(body, "pending   3 events (public.orders 3)") {
		t.Fatalf("detail:\n%s", body)
	}
}

// Read-only: neither action is offered, and their keys do nothing.
func TestReadOnlyHasNoSkipOrRetry(t *testing.T) {
	m, c := stopped(t, true)
	run(m, press(m, "s"))
	run(m, press(m, "R"))
	if m.prompt != nil || len(c.skipped)+len(c.retried) != 0 {
		t.Fatalf("read-only: prompt %v, skipped %v, retried %v", m.prompt, c.skipped, c.retried)
	}
	for _, g := range m.Help() {
		for _, k := range g.Keys {
			if k.Enabled() && (k.Help().Key == "s" || k.Help().Key == "R") {
				t.Fatalf("read-only help offers %s", k.Help().Key)
			}
		}
	}
}
