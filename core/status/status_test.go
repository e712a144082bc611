package status

import (
	"testing"
	"time"

	"pgreplica/core/copystate"
	"pgreplica/core/replay"
)

// No PostgreSQL here: the merge is pure.

func TestMergeStates(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	report := func(rs ...replay.ReplicaReport) *replay.Report { return &replay.Report{Replicas: rs} }
	live := func(rs ...replay.ReplicaStatus) *Live { return &Live{Running: true, Replicas: rs} }
	cases := []struct {
		name  string
		rep   *replay.Report
		live  *Live
		state State
		err   string
	}{
		{"nothing known", nil, nil, Unknown, ""},
		{"databases: caught up", report(replay.ReplicaReport{Name: "r", Reachable: true}), nil, CaughtUp, ""},
		{"databases: behind", report(replay.ReplicaReport{Name: "r", Reachable: true, Pending: 3}), nil, Behind, ""},
		{"unreachable wins over the engine",
			report(replay.ReplicaReport{Name: "r", Error: "connect to replica r: refused"}),
			live(replay.ReplicaStatus{Name: "r", State: replay.Retrying, Err: "conn lost"}), Unreachable, "connect to replica r: refused"},
		{"a read error wins over the engine",
			report(replay.ReplicaReport{Name: "r", Reachable: true, Error: "replica r: no position"}),
			live(replay.ReplicaStatus{Name: "r", State: replay.Streaming}), Error, "replica r: no position"},
		{"the engine's state when it runs",
			report(replay.ReplicaReport{Name: "r", Reachable: true, Pending: 9}),
			live(replay.ReplicaStatus{Name: "r", State: replay.Catchup}), Catchup, ""},
		{"the engine's error with its state",
			report(replay.ReplicaReport{Name: "r", Reachable: true}),
			live(replay.ReplicaStatus{Name: "r", State: replay.Stopped, Err: "replica r lacks table public.t"}), Stopped, "replica r lacks table public.t"},
		{"engine only, no report yet", nil, live(replay.ReplicaStatus{Name: "r", State: replay.Streaming}), Streaming, ""},
		{"a stopped engine does not speak",
			report(replay.ReplicaReport{Name: "r", Reachable: true, Pending: 1}),
			&Live{Running: false, Replicas: []replay.ReplicaStatus{{Name: "r", State: replay.Streaming}}}, Behind, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Merge([]string{"r"}, c.rep, c.live)
			if len(got) != 1 || got[0].Name != "r" || got[0].State != c.state || got[0].Err != c.err {
				t.Fatalf("got %+v, want state %q err %q", got, c.state, c.err)
			}
		})
	}

	// Figures: the databases' counts, the engine's last batch, the newer
	// last-applied time.
	got := Merge([]string{"a"}, report(replay.ReplicaReport{Name: "a", Reachable: true, Pending: 5, Lag: 2 * time.Second,
		Conflicts: 4, LastAppliedAt: at, TableStates: map[string]copystate.State{"public.t": copystate.Copying}}),
		live(replay.ReplicaStatus{Name: "a", State: replay.Catchup, LastApplied: at.Add(time.Second), LastBatch: replay.BatchApplied{Events: 7}}))[0]
	if !got.Stored || !got.Live || got.Pending != 5 || got.Lag != 2*time.Second || got.Conflicts != 4 ||
		!got.LastApplied.Equal(at.Add(time.Second)) || got.LastBatch.Events != 7 || got.Tables["public.t"] != copystate.Copying {
		t.Fatalf("figures: %+v", got)
	}
	// Without a live engine the databases' last-applied time.
	got = Merge(nil, report(replay.ReplicaReport{Name: "a", Reachable: true, LastAppliedAt: at}), nil)[0]
	if !got.LastApplied.Equal(at) || got.Live {
		t.Fatalf("stored only: %+v", got)
	}
	// An unreachable replica has no figures.
	if got := Merge(nil, report(replay.ReplicaReport{Name: "a"}), nil)[0]; got.Stored {
		t.Fatalf("unreachable has figures: %+v", got)
	}
}

func TestMergeOrder(t *testing.T) {
	rep := &replay.Report{Replicas: []replay.ReplicaReport{{Name: "c", Reachable: true}, {Name: "a", Reachable: true}}}
	live := &Live{Running: true, Replicas: []replay.ReplicaStatus{{Name: "d", State: replay.Streaming}, {Name: "a", State: replay.Streaming}}}
	var names []string
	for _, r := range Merge([]string{"a", "b"}, rep, live) {
		names = append(names, r.Name+"="+string(r.State))
	}
	want := "a=streaming b= c=caught up d=streaming"
	if got := join(names); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestWords(t *testing.T) {
	for s, w := range map[State]string{Unknown: "–", CaughtUp: "CAUGHT UP", Streaming: "STREAMING", Unreachable: "UNREACHABLE"} {
		if s.Word() != w {
			t.Errorf("%q.Word() = %q, want %q", s, s.Word(), w)
		}
	}
	// The engine's words are the model's.
	for _, s := range []replay.State{replay.Starting, replay.Streaming, replay.Catchup, replay.Retrying, replay.Stopped} {
		if got := Merge([]string{"r"}, nil, &Live{Running: true, Replicas: []replay.ReplicaStatus{{Name: "r", State: s}}})[0].State; string(got) != string(s) {
			t.Errorf("engine state %s became %s", s, got)
		}
	}
	if !Stopped.Problem() || !Unreachable.Problem() || Streaming.Problem() || CaughtUp.Problem() {
		t.Error("Problem: stopped, unreachable and error only")
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// A standby says who is active; "no progress" only where events may be
// pending; an unknown pending count is neither caught up nor a number.
func TestMergeStandbyNoProgressPendingUnknown(t *testing.T) {
	rep := &replay.Report{Replicas: []replay.ReplicaReport{
		{Name: "a", Reachable: true, Pending: 0},
		{Name: "b", Reachable: true, Pending: 7},
		{Name: "c", Reachable: true, PendingUnknown: true, Error: "replica c: read position: timeout"},
		{Name: "d", Reachable: true, Pending: 3},
	}}
	live := &Live{Running: true, Replicas: []replay.ReplicaStatus{
		{Name: "a", State: replay.Streaming, NoProgressFor: 9 * time.Second},
		{Name: "b", State: replay.Streaming, NoProgressFor: 9 * time.Second},
		{Name: "d", State: replay.Standby, Holder: "pid 42 (pgreplica apply shop)"},
	}}
	got := Merge(nil, rep, live)
	if got[0].NoProgressFor != 0 || got[0].State != Streaming {
		t.Errorf("caught up, yet no progress: %+v", got[0])
	}
	if got[1].NoProgressFor != 9*time.Second {
		t.Errorf("events pending and nothing applied: %+v", got[1])
	}
	if !got[2].PendingUnknown || got[2].State != Error {
		t.Errorf("pending unknown: %+v", got[2])
	}
	if got[3].State != Standby || got[3].Holder != "pid 42 (pgreplica apply shop)" {
		t.Errorf("standby: %+v", got[3])
	}
	noEngine := Merge(nil, &replay.Report{Replicas: []replay.ReplicaReport{{Name: "e", Reachable: true, PendingUnknown: true}}}, nil)
	if noEngine[0].State == CaughtUp {
		t.Errorf("an unknown pending count is not caught up: %+v", noEngine[0])
	}
}
