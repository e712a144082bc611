// Package status is the one model of where each replica of a set stands,
// fed to every face: `pgreplica status`, `tables`, the TUI's monitor and
// the daemon's control endpoint. It is built by one pure merge of what the
// databases say (replay.QueryStatus) and what a running engine says
// (replay.Engine.Status, here or in a daemon); no face derives a state of
// its own.
package status

import (
	"slices"
	"time"

	"pgreplica/core/copystate"
	"pgreplica/core/replay"
)

// State is a replica's state, in the one vocabulary of every face.
type State string

// The states. The first five are a running engine's (the words of
// replay.State); the others are read from the databases when no engine
// speaks for the replica.
const (
	Streaming         = State(replay.Streaming) // caught up, applying changes as they come
	Catchup           = State(replay.Catchup)   // applying a backlog
	Starting          = State(replay.Starting)
	Retrying          = State(replay.Retrying) // a transient fault: retrying with backoff
	Stopped           = State(replay.Stopped)  // an error the operator must fix
	Standby           = State(replay.Standby)  // another engine applies the replica; this one takes over when it stops
	CaughtUp    State = "caught up"            // no engine here; nothing pending
	Behind      State = "behind"               // no engine here; events pending
	Unreachable State = "unreachable"          // the replica could not be reached
	Error       State = "error"                // reached, but its state could not be read
	File        State = "file"                 // a file replica: changes travel in exported bundles
	Unknown     State = ""                     // nothing known yet
)

// Word is the state as the TUI shows it: upper case, "–" when unknown.
func (s State) Word() string {
	if s == Unknown {
		return "–"
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// Problem reports a state that needs the operator.
func (s State) Problem() bool { return s == Stopped || s == Unreachable || s == Error }

// Replica is one replica in the model.
type Replica struct {
	Name  string
	State State
	Err   string // why: unreachable, stopped, or the last fault
	// Stored is true when the databases were read: Position, Pending,
	// Lag and Conflicts mean something.
	Stored   bool
	Position replay.Position
	Pending  int64 // events captured and not yet applied
	// PendingUnknown is true when Pending could not be counted (the
	// replica's position could not be read): faces show it as unknown.
	PendingUnknown bool
	Lag            time.Duration // age of the oldest of them; 0 when none
	LastApplied    time.Time
	Conflicts      int64
	// Tables are the tables being synced there (copying, catchup).
	Tables map[string]copystate.State
	// File is a file replica's bundles (nil for the others).
	File *replay.FileReport
	// From the running engine, when one speaks for the replica.
	Live          bool
	LastBatch     replay.BatchApplied
	AppliedByLive int64
	StateSince    time.Time // when the engine's worker entered State
	CaughtUpAt    time.Time // the engine's heartbeat (replay.ReplicaStatus.CaughtUpAt)
	// NoProgressFor is how long the engine has applied nothing although
	// events may be pending (a dead path, a stuck server); 0 when it
	// progresses or nothing is pending.
	NoProgressFor time.Duration
	// Holder is, for Standby, the session that applies the replica.
	Holder string
	// Held are the tables held on the replica (their events do not fit
	// it), from the engine's last batch or the databases' table states.
	Held []string
}

// Live is what a running engine says: its replicas' status, or nothing
// (Running false) when no engine runs here or none could be asked.
type Live struct {
	Running  bool
	Replicas []replay.ReplicaStatus
}

// Merge builds the model of replicas names (the configured ones; a
// replica known only to the report, then only to the engine, is added
// after them) from
// the databases' report (nil when not read) and the live engine (nil
// when none).
//
// The state is, in this order: unreachable or error when the databases
// say so; the engine's state when an engine runs for the replica; else
// caught up or behind as the databases count pending events; else unknown.
func Merge(names []string, rep *replay.Report, live *Live) []Replica {
	names = append([]string(nil), names...)
	add := func(n string) {
		for _, x := range names {
			if x == n {
				return
			}
		}
		names = append(names, n)
	}
	stored := map[string]replay.ReplicaReport{}
	if rep != nil {
		for _, r := range rep.Replicas {
			stored[r.Name] = r
			add(r.Name)
		}
	}
	lives := map[string]replay.ReplicaStatus{}
	if live != nil && live.Running {
		for _, r := range live.Replicas {
			lives[r.Name] = r
			add(r.Name)
		}
	}
	out := make([]Replica, 0, len(names))
	for _, n := range names {
		r := Replica{Name: n}
		l, isLive := lives[n]
		if isLive {
			r.Live, r.State, r.Err = true, State(l.State), l.Err
			r.LastBatch, r.LastApplied, r.AppliedByLive = l.LastBatch, l.LastApplied, l.AppliedEvents
			r.StateSince, r.CaughtUpAt = l.StateSince, l.CaughtUpAt
			if r.Position.Snapshot.IsZero() {
				r.Position = l.Position
			}
			r.NoProgressFor, r.Holder, r.Held = l.NoProgressFor, l.Holder, l.Held
		}
		if s, ok := stored[n]; ok {
			r.Stored = s.Reachable
			r.Position, r.Pending, r.Lag, r.Conflicts, r.Tables, r.File = s.Position, s.Pending, s.Lag, s.Conflicts, s.TableStates, s.File
			r.PendingUnknown = s.PendingUnknown
			if !s.PendingUnknown && s.Pending == 0 {
				r.NoProgressFor = 0 // nothing to progress on
			}
			if r.LastApplied.IsZero() {
				r.LastApplied = s.LastAppliedAt
			}
			if s.Reachable && s.Error == "" {
				r.Held = heldIn(s.TableStates) // the databases are the truth where they were read
			}
			switch {
			case s.File != nil && s.Error == "":
				r.State = File
			case !s.Reachable:
				r.State, r.Err = Unreachable, s.Error
			case s.Error != "":
				r.State, r.Err = Error, s.Error
			case isLive:
			case !s.PendingUnknown && s.Pending == 0:
				r.State = CaughtUp
			default:
				r.State = Behind
			}
		}
		out = append(out, r)
	}
	return out
}

// heldIn are the held tables of a replica's table states, sorted.
func heldIn(states map[string]copystate.State) []string {
	var out []string
	for t, st := range states {
		if st == copystate.Held {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}
