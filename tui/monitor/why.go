package monitor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/replay"
	"pgreplica/core/status"
	"pgreplica/tui/screen"
)

// Deps is what the monitor's actions on a replica need of core; a nil
// field turns its action off.
type Deps struct {
	// Why diagnoses a replica (replay.Diagnose): the failing event.
	Why func(ctx context.Context, replica string) (replay.Diagnosis, error)
	// Skip moves replica past event id (replay.ReadEvent + replay.Skip).
	Skip func(ctx context.Context, replica string, id int64, by string) error
	// Retry makes replica try again now (the engine or the daemon).
	Retry func(ctx context.Context, replica string) error
	// Switchover makes replica the origin (core/switchover), reporting
	// each line of its progress.
	Switchover func(ctx context.Context, replica string, report func(string)) error
}

// SetDeps wires the actions; in read-only mode they stay off.
func (m *Model) SetDeps(d Deps) {
	if m.env.ReadOnly {
		d.Skip, d.Retry, d.Switchover = nil, nil, nil
	}
	m.deps = d
	m.keys.Skip.SetEnabled(d.Skip != nil && d.Why != nil)
	m.keys.Retry.SetEnabled(d.Retry != nil)
	m.keys.Switchover.SetEnabled(d.Switchover != nil)
}

func actionKeys() (skip, retry key.Binding) {
	skip = key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "skip the failing event "+screen.Asks))
	retry = key.NewBinding(key.WithKeys("R"), key.WithHelp("R", "retry the replica now"))
	skip.SetEnabled(false)
	retry.SetEnabled(false)
	return skip, retry
}

// whyMsg is a diagnosis that arrived; skip opens the skip prompt with it.
type whyMsg struct {
	replica string
	d       replay.Diagnosis
	err     error
	skip    bool
}

// needsWhy reports whether a replica's state is worth a diagnosis.
func needsWhy(r Row) bool {
	return r.State == status.Stopped || r.State == status.Retrying || r.State.Problem() || r.Pending > 0 && r.NoProgressFor > 0
}

func (m *Model) fetchWhy(replica string, skip bool) tea.Cmd {
	if m.deps.Why == nil {
		return nil
	}
	why := m.deps.Why
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d, err := why(ctx, replica)
		return whyMsg{replica: replica, d: d, err: err, skip: skip}
	}
}

// gotWhy stores a diagnosis and, when asked, opens the typed prompt that
// skips its failing event.
func (m *Model) gotWhy(msg whyMsg) tea.Cmd {
	m.why[msg.replica] = msg
	if !msg.skip {
		return nil
	}
	if msg.err != nil {
		return screen.Flash(screen.Bad, "why "+msg.replica+": "+msg.err.Error())
	}
	f := msg.d.Failing
	if f == nil {
		return screen.Flash(screen.Info, msg.replica+": no pending event is refused there; nothing to skip")
	}
	id := fmt.Sprint(f.ID)
	skip, env, replica := m.deps.Skip, m.env, msg.replica
	m.prompt = &screen.Prompt{
		Level: 3,
		Title: fmt.Sprintf("Skip event %s on %s?", id, replica),
		Body: []string{
			fmt.Sprintf("%s %s key %s will never be applied there: %s", f.Op, f.Table, f.Key, f.Error),
			replica + " will differ from the origin for this change until it is applied again (pgreplica reapply --replica " + replica + " --event " + id + ") or the table is copied again (pgreplica sync --table " + f.Table + ").",
			"It is recorded in pgreplica.skipped on the replica, with who and when.",
		},
		Expect: id,
		OnYes: func() tea.Msg {
			env.Audit("tui: skip event "+id, "replica", replica)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := skip(ctx, replica, f.ID, env.Operator())
			if err != nil {
				return screen.FlashMsg{Level: screen.Bad, Text: "skip event " + id + " on " + replica + ": " + err.Error()}
			}
			return screen.FlashMsg{Level: screen.Good, Text: "skipped event " + id + " on " + replica + "; it applies the rest at its next attempt (R: now)"}
		},
	}
	return nil
}

func (m *Model) retry(replica string) tea.Cmd {
	retry, env := m.deps.Retry, m.env
	return func() tea.Msg {
		env.Audit("tui: retry", "replica", replica)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := retry(ctx, replica); err != nil {
			return screen.FlashMsg{Level: screen.Bad, Text: "retry " + replica + ": " + err.Error()}
		}
		return screen.FlashMsg{Level: screen.Good, Text: replica + " is retrying now"}
	}
}

// whyLines are a diagnosis in the replica's detail view.
func whyLines(w whyMsg) []string {
	if w.err != nil {
		return []string{"", "why", "  could not diagnose: " + w.err.Error()}
	}
	out := []string{"", "why"}
	d := w.d
	if d.Pending > 0 {
		var tabs []string
		for t, n := range d.PendingByTable {
			tabs = append(tabs, fmt.Sprintf("%s %d", t, n))
		}
		out = append(out, fmt.Sprintf("  pending   %d events (%s)", d.Pending, strings.Join(sorted(tabs), ", ")))
	}
	f := d.Failing
	if f == nil {
		return append(out, fmt.Sprintf("  every one of the %d pending events tried applies: nothing is refused there", d.Tried))
	}
	out = append(out,
		fmt.Sprintf("  refused   event %d (txid %d) %s %s key %s", f.ID, f.Txid, f.Op, f.Table, f.Key),
		"  error     "+f.Error)
	if f.Detail != "" {
		out = append(out, "  detail    "+f.Detail)
	}
	if f.Data != "" {
		out = append(out, "  data      "+f.Data)
	}
	out = append(out, "  statement "+f.Statement)
	if f.Hint != "" {
		out = append(out, "  hint      "+f.Hint)
	}
	out = append(out, fmt.Sprintf("  behind it %d events", f.Behind), "", "s skips this event (asks for its number) · R retries now")
	return out
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
