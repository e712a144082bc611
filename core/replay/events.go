// Package replay is the replay engine: it reads the origin's event log in
// batches cut by transaction snapshots and applies each batch, with the new
// position, in one replica transaction. It reports what happens as typed
// events and log/slog records; it has no terminal code.
package replay

import (
	"time"

	"pgreplica/core/pg"
)

// State is what a replica's worker is doing.
type State string

// The states of a replica's worker.
const (
	Starting  State = "starting"
	Streaming State = "streaming" // caught up, applying changes as they come
	Catchup   State = "catchup"   // applying a backlog
	Retrying  State = "retrying"  // a transient fault (connection lost): retrying with backoff
	Stopped   State = "stopped"   // an error the operator must fix; retried slowly
	Standby   State = "standby"   // another pgreplica applies this replica; taking over when it stops
	Idle      State = "idle"      // the engine is not running
)

// Event is something the engine reports: BatchApplied, StateChanged or
// ConflictFound.
type Event interface{ replica() string }

// BatchApplied is one replica transaction committed.
type BatchApplied struct {
	Replica  string
	Events   int
	Bytes    int
	Took     time.Duration
	Position Position
	Oldest   time.Time // capture time of the oldest event in the batch
}

// StateChanged is a worker moving from one state to another; Err says why
// for Retrying and Stopped.
type StateChanged struct {
	Replica  string
	From, To State
	Err      error
}

// ConflictFound is a change that could not be applied as captured.
type ConflictFound struct {
	Replica  string
	Conflict Conflict
}

func (e BatchApplied) replica() string  { return e.Replica }
func (e StateChanged) replica() string  { return e.Replica }
func (e ConflictFound) replica() string { return e.Replica }

// Conflict kinds.
const (
	UpdateNoRow = "update: no row"
	DeleteNoRow = "delete: no row"
	// UpdateOriginDiffers (conflicts.detect_drift): the replica's row had
	// other values in the changed columns than the origin's row had before
	// the change (a local write on the replica); the change was applied.
	UpdateOriginDiffers = "update_origin_differs"
)

// Conflict is an UPDATE or DELETE that found no row on the replica (it was
// applied as a no-op), a change of a row that a local write had changed
// (detect_drift), or on a multi-master node a concurrent change resolved by
// the policy; each is recorded in pgreplica.conflict there.
type Conflict struct {
	EventID int64
	Txid    uint64
	Table   pg.Table
	Op      string // "U" or "D"
	Key     string // the row's key as JSON
	Data    string // the changed columns as JSON (UPDATE)
	Kind    string
	At      time.Time // when it was found
	// Ledgered: a multi-master table's apply function recorded it in
	// pgreplica.conflict itself (with both rows, the versions and the
	// outcome).
	Ledgered bool
}
