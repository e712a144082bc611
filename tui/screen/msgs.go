package screen

import (
	"pgreplica/core/logring"
	"pgreplica/core/replay"
	"pgreplica/tui/source"
)

// StatusMsg is a new live snapshot from the engine or the daemon.
type StatusMsg struct {
	Snap source.Snapshot
	Err  error
}

// ReportMsg is a new status report read from the databases.
type ReportMsg struct {
	Report replay.Report
	Err    error
}

// LogMsg carries log records newer than the last ones delivered.
type LogMsg struct {
	Records []logring.Record
}

// EngineMsg asks the root to start (true) or stop (false) the engine in
// this process. Stopping asks the operator first unless Confirmed.
type EngineMsg struct{ Start, Confirmed bool }

// WizardDoneMsg ends the wizard: the root shows the monitor, with the
// engine started here when StartEngine is set.
type WizardDoneMsg struct{ StartEngine bool }

// QuitMsg asks the root to quit (after stopping the engine). Message is
// printed after the terminal is restored.
type QuitMsg struct{ Message string }
