package replay

import "pgreplica/core/config"

// batch is a bounded run of an interval's events, applied in one replica
// transaction; final marks the interval's last batch. The engine's worker
// and Aligned cut batches the same way (full) and move the position the
// same way (next).
type batch struct {
	target Snapshot // the end of the interval
	events []*event
	bytes  int
	final  bool
}

// full reports whether e must go in a new batch: b already holds
// batch.max_events events, or e would take it past batch.max_bytes (a batch
// holds at least one event, however big).
func (b *batch) full(e *event, limits config.Batch) bool {
	return len(b.events) >= limits.MaxEvents || int64(b.bytes+e.size()) > limits.MaxBytes && len(b.events) > 0
}

// add appends e to b.
func (b *batch) add(e *event) {
	b.events = append(b.events, e)
	b.bytes += e.size()
}

// next is the position after b is applied from pos: inside the interval
// (pos.Snapshot, b.target] after b's last event, or at b.target once the
// final batch is applied. AppliedEvents and AppliedAt are the caller's.
func (b *batch) next(pos Position) Position {
	if b.final {
		return Position{Snapshot: b.target}
	}
	next := Position{Snapshot: pos.Snapshot, Target: b.target}
	if len(b.events) > 0 {
		next.LastID = b.events[len(b.events)-1].ID
	}
	return next
}
