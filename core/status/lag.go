package status

import "time"

// LagAt is how far the replica is behind at now. With a running engine it
// is the age of its heartbeat (the origin snapshot it last fully applied:
// right on an idle origin, growing while the replica is stopped or
// unreachable), or, before the first heartbeat, the age of the replica's
// last applied position; the databases' count of the oldest pending
// event's age is taken when it is larger. Without an engine it is that
// count alone. ok is false when nothing is known.
func (r Replica) LagAt(now time.Time) (lag time.Duration, ok bool) {
	if r.Live {
		switch {
		case !r.CaughtUpAt.IsZero():
			lag, ok = now.Sub(r.CaughtUpAt), true
		case !r.LastApplied.IsZero():
			lag, ok = now.Sub(r.LastApplied), true
		}
	}
	if r.Stored && (r.Lag > lag || !ok) {
		lag, ok = r.Lag, true
	}
	if lag < 0 {
		lag = 0
	}
	return lag, ok
}

// Healthy reports whether the replica is streaming or catching up within
// limit (0: any lag), and why not when it is not.
func (r Replica) Healthy(now time.Time, limit time.Duration) (bool, string) {
	switch r.State {
	case Streaming, Catchup, CaughtUp:
	case File:
		return true, "" // fed by bundles, not by an engine: nothing to be ready for
	case Unknown:
		return false, "state not known yet"
	default:
		why := string(r.State)
		if r.Err != "" {
			why += ": " + r.Err
		}
		return false, why
	}
	if lag, ok := r.LagAt(now); ok && limit > 0 && lag > limit {
		return false, "lag " + lag.Round(time.Millisecond).String() + " over " + limit.String()
	}
	return true, ""
}
