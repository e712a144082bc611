package alert

import (
	"fmt"
	"strings"
	"time"

	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// Rules are when a problem is alerted.
type Rules struct {
	LagOver time.Duration // 0: no lag alerts
	Repeat  time.Duration // 0: no reminders
	Grace   time.Duration // how long a replica may be unreachable before it is alerted
	Group   time.Duration // conflicts are sent at most once per replica per Group
}

// maxListed is how many conflicts a grouped message lists.
const maxListed = 5

// problem is one firing or pending problem of one replica.
type problem struct {
	since    time.Time // when the condition was first seen
	firing   bool
	lastSent time.Time
	detail   string
}

type conflictGroup struct {
	count int
	first []replay.Conflict
	since time.Time
}

// Tracker turns status snapshots and conflicts into messages. It is pure
// (the time is passed in) and not safe for concurrent use.
type Tracker struct {
	set      string
	rules    Rules
	problems map[string]*problem // replica + "\x00" + kind
	groups   map[string]*conflictGroup
	lastSent map[string]time.Time // conflicts: replica -> last group sent
}

// NewTracker makes a tracker for set.
func NewTracker(set string, rules Rules) *Tracker {
	return &Tracker{set: set, rules: rules, problems: map[string]*problem{},
		groups: map[string]*conflictGroup{}, lastSent: map[string]time.Time{}}
}

// condition is a problem kind's state in one snapshot: active, and a
// detail for the message.
type condition struct {
	active bool
	ready  bool // active long enough to be alerted
	detail string
}

// problemKinds are the problems a replica can have, in the order they are
// looked at.
var problemKinds = []Kind{Stopped, Unreachable, Lag, TablesHeld}

// conditions derives the problems of r from its state.
func (t *Tracker) conditions(r status.Replica, now time.Time, since func(Kind) time.Time) map[Kind]condition {
	out := map[Kind]condition{}
	stopped := r.State == status.Stopped
	out[Stopped] = condition{active: stopped, ready: stopped, detail: r.Err}
	unreachable := r.State == status.Retrying || r.State == status.Unreachable || r.State == status.Error
	out[Unreachable] = condition{active: unreachable, ready: unreachable && now.Sub(since(Unreachable)) >= t.rules.Grace, detail: r.Err}
	held := len(r.Held) > 0
	out[TablesHeld] = condition{active: held, ready: held,
		detail: "held there (their events do not fit the replica's tables; the other tables go on): " + strings.Join(r.Held, ", ") +
			"; fix them, then pgreplica retry --table T, or copy them again with pgreplica sync --table T"}
	if t.rules.LagOver > 0 {
		lag, ok := r.LagAt(now)
		// A stopped or unreachable replica is alerted as such, not for its
		// lag as well (the lag alert is inhibited).
		over := ok && lag > t.rules.LagOver && !stopped && !unreachable
		out[Lag] = condition{active: over, ready: over,
			detail: fmt.Sprintf("lag %s (over %s); %d events pending", lag.Round(time.Second), t.rules.LagOver, r.Pending)}
	}
	return out
}

// Observe takes a status snapshot at now and returns the messages due.
func (t *Tracker) Observe(now time.Time, replicas []status.Replica) []Message {
	var out []Message
	seen := map[string]bool{}
	for _, r := range replicas {
		if r.State == status.State(replay.Idle) {
			// The engine is stopping: nothing is resolved by that.
			for _, k := range problemKinds {
				seen[r.Name+"\x00"+string(k)] = true
			}
			continue
		}
		since := func(k Kind) time.Time {
			if p, ok := t.problems[r.Name+"\x00"+string(k)]; ok {
				return p.since
			}
			return now
		}
		for _, k := range problemKinds {
			c, ok := t.conditions(r, now, since)[k]
			key := r.Name + "\x00" + string(k)
			seen[key] = true
			p := t.problems[key]
			if !ok || !c.active {
				if p != nil && p.firing {
					out = append(out, t.message(r.Name, k, Resolved, false, p.since, now, resolvedDetail(k, r, now)))
				}
				delete(t.problems, key)
				continue
			}
			if p == nil {
				p = &problem{since: now}
				t.problems[key] = p
			}
			p.detail = c.detail
			switch {
			case !c.ready:
			case !p.firing:
				p.firing, p.lastSent = true, now
				out = append(out, t.message(r.Name, k, Firing, false, p.since, now, c.detail))
			case t.rules.Repeat > 0 && now.Sub(p.lastSent) >= t.rules.Repeat:
				p.lastSent = now
				out = append(out, t.message(r.Name, k, Firing, true, p.since, now, c.detail))
			}
		}
	}
	// A replica gone from the snapshots (a reload removed it) resolves.
	for key, p := range t.problems {
		if !seen[key] {
			name, k, _ := strings.Cut(key, "\x00")
			if p.firing {
				out = append(out, t.message(name, Kind(k), Resolved, false, p.since, now, "the replica is no longer in the config"))
			}
			delete(t.problems, key)
		}
	}
	return append(out, t.flushConflicts(now, false)...)
}

func resolvedDetail(k Kind, r status.Replica, now time.Time) string {
	lag, _ := r.LagAt(now)
	return fmt.Sprintf("the replica is %s again; lag %s", r.State, lag.Round(time.Millisecond))
}

// AddConflict records a conflict found on replica.
func (t *Tracker) AddConflict(replica string, c replay.Conflict, now time.Time) {
	g := t.groups[replica]
	if g == nil {
		g = &conflictGroup{since: now}
		t.groups[replica] = g
	}
	g.count++
	if len(g.first) < maxListed {
		g.first = append(g.first, c)
	}
}

// flushConflicts sends the groups whose interval has passed (all of them
// when force).
func (t *Tracker) flushConflicts(now time.Time, force bool) []Message {
	var out []Message
	for name, g := range t.groups {
		if !force && now.Sub(t.lastSent[name]) < t.rules.Group {
			continue
		}
		var b strings.Builder
		for _, c := range g.first {
			fmt.Fprintf(&b, "event %d (txid %d): %s %s key %s: %s\n", c.EventID, c.Txid, opWord(c.Op), c.Table, c.Key, c.Kind)
		}
		if g.count > len(g.first) {
			fmt.Fprintf(&b, "… and %d more; pgreplica conflicts lists them all\n", g.count-len(g.first))
		}
		m := t.message(name, Conflicts, Info, false, g.since, now, strings.TrimSuffix(b.String(), "\n"))
		m.Summary = fmt.Sprintf("replica %s: %d new conflict(s)", name, g.count)
		out = append(out, m)
		t.lastSent[name] = now
		delete(t.groups, name)
	}
	return out
}

// Flush returns the conflict groups still held, at the end.
func (t *Tracker) Flush(now time.Time) []Message { return t.flushConflicts(now, true) }

func opWord(op string) string {
	switch op {
	case "U":
		return "UPDATE"
	case "D":
		return "DELETE"
	case "I":
		return "INSERT"
	}
	return op
}

func (t *Tracker) message(replica string, k Kind, st Status, reminder bool, since, now time.Time, detail string) Message {
	m := Message{Set: t.set, Replica: replica, Kind: k, Status: st, Reminder: reminder, Since: since, At: now, Detail: detail}
	what := map[Kind]string{Stopped: "stopped", Unreachable: "unreachable", Lag: "behind"}[k]
	switch st {
	case Resolved:
		m.Summary = fmt.Sprintf("replica %s no longer %s (after %s)", replica, what, now.Sub(since).Round(time.Second))
	default:
		m.Summary = fmt.Sprintf("replica %s %s", replica, what)
		if k == Unreachable {
			m.Summary += fmt.Sprintf(" for %s", now.Sub(since).Round(time.Second))
			if originFault(detail) {
				m.Summary = fmt.Sprintf("replica %s cut off for %s: the origin is unreachable", replica, now.Sub(since).Round(time.Second))
			}
		}
	}
	return m
}

// originFault reports whether a retrying replica's error is the origin's
// (the replica itself may be fine).
func originFault(err string) bool {
	return strings.HasPrefix(err, "connect to origin") || strings.HasPrefix(err, "origin:")
}
