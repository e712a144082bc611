package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/status"
)

func summaries(ms []Message) string {
	var out []string
	for _, m := range ms {
		s := string(m.Status) + " " + string(m.Kind)
		if m.Reminder {
			s += " (reminder)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// A replica retrying (unreachable) through many observations: nothing
// within the grace period, one firing message after it, reminders no more
// often than repeat, one resolved message when it streams again.
func TestTrackerOneMessagePerProblemStartRepeatAndEnd(t *testing.T) {
	tr := NewTracker("shop", Rules{Grace: 10 * time.Second, Repeat: time.Minute, Group: time.Minute})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := status.Replica{Name: "r", State: status.Retrying, Err: "connect to replica r: connection refused", Live: true}
	up := status.Replica{Name: "r", State: status.Streaming, Live: true}
	var got []Message
	for s := 0; s <= 150; s++ { // 150s down, observed every second
		got = append(got, tr.Observe(t0.Add(time.Duration(s)*time.Second), []status.Replica{down})...)
	}
	up.CaughtUpAt = t0.Add(151 * time.Second)
	got = append(got, tr.Observe(t0.Add(151*time.Second), []status.Replica{up})...)
	for s := 152; s < 200; s++ {
		up.CaughtUpAt = t0.Add(time.Duration(s) * time.Second)
		got = append(got, tr.Observe(t0.Add(time.Duration(s)*time.Second), []status.Replica{up})...)
	}
	want := "firing replica_unreachable, firing replica_unreachable (reminder), firing replica_unreachable (reminder), resolved replica_unreachable"
	if s := summaries(got); s != want {
		t.Fatalf("messages = %s\nwant %s", s, want)
	}
	if !got[0].At.Equal(t0.Add(10*time.Second)) || got[0].Summary != "replica r unreachable for 10s" ||
		got[0].Detail != "connect to replica r: connection refused" {
		t.Errorf("first = %+v", got[0])
	}
	if !got[1].At.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("reminder at %v", got[1].At)
	}
	if got[3].Summary != "replica r no longer unreachable (after 2m31s)" {
		t.Errorf("resolved = %q", got[3].Summary)
	}
}

// A short outage, within the grace period, sends nothing at all.
func TestTrackerGraceSwallowsShortOutages(t *testing.T) {
	tr := NewTracker("shop", Rules{Grace: 10 * time.Second, Group: time.Minute})
	t0 := time.Now()
	var got []Message
	for i := 0; i < 5; i++ {
		got = append(got, tr.Observe(t0.Add(time.Duration(i)*time.Second), []status.Replica{{Name: "r", State: status.Retrying}})...)
	}
	got = append(got, tr.Observe(t0.Add(6*time.Second), []status.Replica{{Name: "r", State: status.Streaming}})...)
	if len(got) != 0 {
		t.Fatalf("messages = %s", summaries(got))
	}
}

// Stopped fires at once with the error; the lag alert is inhibited while
// stopped and fires once it works again but is still behind.
func TestTrackerStoppedAndLag(t *testing.T) {
	tr := NewTracker("shop", Rules{LagOver: 30 * time.Second, Group: time.Minute})
	t0 := time.Now()
	stopped := status.Replica{Name: "r", State: status.Stopped, Live: true, CaughtUpAt: t0.Add(-time.Hour),
		Err: `replica r: INSERT into public.t (event 7): duplicate key value violates unique constraint "t_pkey"`}
	got := tr.Observe(t0, []status.Replica{stopped})
	got = append(got, tr.Observe(t0.Add(time.Second), []status.Replica{stopped})...)
	catching := status.Replica{Name: "r", State: status.Catchup, Live: true, CaughtUpAt: t0.Add(-time.Hour), Pending: 900}
	got = append(got, tr.Observe(t0.Add(2*time.Second), []status.Replica{catching})...)
	catching.CaughtUpAt = t0.Add(3 * time.Second)
	got = append(got, tr.Observe(t0.Add(3*time.Second), []status.Replica{catching})...)
	if s, want := summaries(got), "firing replica_stopped, resolved replica_stopped, firing lag, resolved lag"; s != want {
		t.Fatalf("messages = %s\nwant %s", s, want)
	}
	if got[0].Detail != stopped.Err || !strings.Contains(got[0].Text(), "Try: pgreplica why --replica r") {
		t.Errorf("stopped message:\n%s", got[0].Text())
	}
	if !strings.HasPrefix(got[2].Detail, "lag 1h0m2s (over 30s); 900 events pending") {
		t.Errorf("lag detail %q", got[2].Detail)
	}
}

// Conflicts are grouped: one message per replica per interval with the
// count and the first few.
func TestTrackerGroupsConflicts(t *testing.T) {
	tr := NewTracker("shop", Rules{Group: time.Minute})
	t0 := time.Now()
	tr.Observe(t0, nil) // the first group may go at once
	for i := 1; i <= 12; i++ {
		tr.AddConflict("r", replay.Conflict{EventID: int64(i), Txid: 100, Table: pg.Table{Schema: "public", Name: "t"},
			Op: "U", Key: fmt.Sprintf(`{"id": %d}`, i), Kind: replay.UpdateNoRow}, t0)
	}
	got := tr.Observe(t0.Add(time.Second), nil)
	if len(got) != 1 || got[0].Summary != "replica r: 12 new conflict(s)" {
		t.Fatalf("messages = %+v", got)
	}
	lines := strings.Split(got[0].Detail, "\n")
	if len(lines) != 6 || lines[0] != `event 1 (txid 100): UPDATE public.t key {"id": 1}: update: no row` ||
		lines[5] != "… and 7 more; pgreplica conflicts lists them all" {
		t.Fatalf("detail:\n%s", got[0].Detail)
	}
	// More within the interval wait for its end.
	tr.AddConflict("r", replay.Conflict{EventID: 13, Kind: replay.DeleteNoRow, Op: "D"}, t0.Add(2*time.Second))
	if got := tr.Observe(t0.Add(30*time.Second), nil); len(got) != 0 {
		t.Fatalf("second group too early: %s", summaries(got))
	}
	if got := tr.Observe(t0.Add(62*time.Second), nil); len(got) != 1 || got[0].Summary != "replica r: 1 new conflict(s)" {
		t.Fatalf("second group: %+v", got)
	}
}

// An origin fault is named as such, not as the replica's.
func TestTrackerNamesAnOriginFault(t *testing.T) {
	tr := NewTracker("shop", Rules{Group: time.Minute})
	t0 := time.Now()
	r := status.Replica{Name: "r", State: status.Retrying, Err: "connect to origin (u@db1:5432/shop): connection refused"}
	got := tr.Observe(t0, []status.Replica{r})
	if len(got) != 1 || got[0].Summary != "replica r cut off for 0s: the origin is unreachable" {
		t.Fatalf("messages = %+v", got)
	}
}

// A held table is a problem of its own: one message when the engine finds
// it held, none while it stays so, one when it is released.
func TestTrackerTablesHeld(t *testing.T) {
	tr := NewTracker("shop", Rules{Repeat: time.Hour})
	t0 := time.Now()
	held := status.Replica{Name: "r", State: status.Streaming, Live: true, CaughtUpAt: t0, Held: []string{"public.orders"}}
	got := tr.Observe(t0, []status.Replica{held})
	got = append(got, tr.Observe(t0.Add(time.Second), []status.Replica{held})...)
	held.Held = nil
	got = append(got, tr.Observe(t0.Add(2*time.Second), []status.Replica{held})...)
	if s, want := summaries(got), "firing tables_held, resolved tables_held"; s != want {
		t.Fatalf("messages = %s\nwant %s", s, want)
	}
	if !strings.Contains(got[0].Detail, "public.orders; fix them, then pgreplica retry --table T") {
		t.Errorf("held detail %q", got[0].Detail)
	}
}
