// Package alert tells operators what happens to a replication set: by
// e-mail and webhooks, Alertmanager-like. A problem (a replica stopped,
// unreachable for longer than the grace period, or further behind than
// lag_over) sends one message when it starts, reminders at most every
// repeat while it lasts, and one message when it is resolved; new
// conflicts are grouped per replica per interval. Problems are derived
// from core/status, the one model of replica states.
//
// Alerts never block replication: the engine's events are counted under a
// short lock, status snapshots are polled, and every channel sends from
// its own goroutine and queue, with a rate cap, retrying with backoff.
package alert

import (
	"fmt"
	"strings"
	"time"
)

// Kind is what a message is about.
type Kind string

// The kinds of message.
const (
	EngineStarted Kind = "engine_started"
	EngineStopped Kind = "engine_stopped"
	Stopped       Kind = "replica_stopped"     // an apply error the operator must fix
	Unreachable   Kind = "replica_unreachable" // retrying for longer than the grace period
	Lag           Kind = "lag"                 // further behind than lag_over
	TablesHeld    Kind = "tables_held"         // tables whose events do not fit the replica: held there
	Conflicts     Kind = "conflicts"           // new conflicts in the last interval
	Test          Kind = "test"                // pgreplica alerts test
)

// Status says whether a message starts, repeats or ends a problem.
type Status string

// The statuses of a message.
const (
	Firing   Status = "firing"
	Resolved Status = "resolved"
	Info     Status = "info" // engine started/stopped, conflicts, test: nothing to resolve
)

// Message is one alert, as every channel sends it. Its JSON is the body
// of a webhook.
type Message struct {
	Set      string    `json:"set"`
	Replica  string    `json:"replica,omitempty"`
	Kind     Kind      `json:"kind"`
	Status   Status    `json:"status"`
	Reminder bool      `json:"reminder,omitempty"` // a repeat of a firing problem
	Summary  string    `json:"summary"`            // one line
	Detail   string    `json:"detail,omitempty"`   // the error, the hint, the first conflicts
	Since    time.Time `json:"since,omitzero"`     // when the problem started
	At       time.Time `json:"at"`
	Host     string    `json:"host,omitempty"`
}

// Subject is the e-mail subject: "[pgreplica shop] FIRING: ...".
func (m Message) Subject() string {
	word := strings.ToUpper(string(m.Status))
	if m.Reminder {
		word = "STILL FIRING"
	}
	return fmt.Sprintf("[pgreplica %s] %s: %s", m.Set, word, m.Summary)
}

// Text is the e-mail body.
func (m Message) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", m.Summary)
	if m.Detail != "" {
		fmt.Fprintf(&b, "%s\n\n", m.Detail)
	}
	fmt.Fprintf(&b, "set:      %s\n", m.Set)
	if m.Replica != "" {
		fmt.Fprintf(&b, "replica:  %s\n", m.Replica)
	}
	fmt.Fprintf(&b, "kind:     %s (%s)\n", m.Kind, m.Status)
	if !m.Since.IsZero() {
		fmt.Fprintf(&b, "since:    %s (%s)\n", m.Since.UTC().Format(time.RFC3339), m.At.Sub(m.Since).Round(time.Second))
	}
	fmt.Fprintf(&b, "at:       %s\n", m.At.UTC().Format(time.RFC3339))
	if m.Host != "" {
		fmt.Fprintf(&b, "host:     %s\n", m.Host)
	}
	if m.Replica != "" && m.Status == Firing && (m.Kind == Stopped || m.Kind == Lag) {
		fmt.Fprintf(&b, "\nTry: pgreplica why --replica %s\n", m.Replica)
	}
	return b.String()
}
