package status

// Severity orders states for "the worst replica": higher needs the
// operator sooner. Stopped, unreachable and error are problems; retrying
// is a fault being retried; behind, catchup and starting are not there
// yet; streaming and caught up are healthy; unknown is nothing known.
func (s State) Severity() int {
	switch s {
	case Stopped, Unreachable, Error:
		return 5
	case Retrying:
		return 4
	case Behind, Catchup:
		return 3
	case Starting:
		return 2
	case Unknown:
		return 1
	}
	return 0 // Streaming, CaughtUp, Standby (another engine applies it), File
}

// Healthy reports a state in which a replica applies changes as they come
// (streaming, or another engine does: standby), has nothing left to apply
// (caught up), or travels in bundles (file).
func (s State) Healthy() bool { return s.Severity() == 0 }

// Worst is the replica in the worst state (the first of equals); ok is
// false for no replicas.
func Worst(rs []Replica) (Replica, bool) {
	if len(rs) == 0 {
		return Replica{}, false
	}
	w := rs[0]
	for _, r := range rs[1:] {
		if r.State.Severity() > w.State.Severity() {
			w = r
		}
	}
	return w, true
}
