package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// whyJSON is the stable shape of `why --json`.
type whyJSON struct {
	Set      string           `json:"set"`
	Replicas []whyReplicaJSON `json:"replicas"`
}

type whyReplicaJSON struct {
	Name            string           `json:"name"`
	State           string           `json:"state"`
	Healthy         bool             `json:"healthy"`
	Error           string           `json:"error,omitempty"`
	StuckSince      *time.Time       `json:"stuck_since,omitempty"`
	StuckSeconds    float64          `json:"stuck_seconds,omitempty"`
	Position        string           `json:"position,omitempty"`
	Pending         int64            `json:"pending"`
	PendingByTable  map[string]int64 `json:"pending_by_table,omitempty"`
	OldestPendingAt *time.Time       `json:"oldest_pending_at,omitempty"`
	Tried           int              `json:"tried"`
	Failing         *failingJSON     `json:"failing_event"`
	Hint            string           `json:"hint,omitempty"`
}

type failingJSON struct {
	ID         int64           `json:"id"`
	Txid       uint64          `json:"txid"`
	CapturedAt time.Time       `json:"captured_at"`
	Table      string          `json:"table"`
	Op         string          `json:"op"`
	Key        json.RawMessage `json:"key"`
	Data       json.RawMessage `json:"data"`
	Statement  string          `json:"statement,omitempty"`
	Error      string          `json:"error"`
	Detail     string          `json:"detail,omitempty"`
	SQLState   string          `json:"sqlstate,omitempty"`
	Hint       string          `json:"hint"`
	Behind     int64           `json:"behind"`
}

func (a *app) whyCommand() *cobra.Command {
	var asJSON bool
	var only string
	cmd := &cobra.Command{
		Use:   "why",
		Short: "Explain a replica that is stopped, retrying or behind",
		Long: `Explains why a replica is stopped, retrying or behind: its state and error
(from the daemon, when control.socket is set and a daemon listens), how long
it has been stuck, what is pending behind it per table, and the first pending
event the replica refuses: its id, txid, table, key, operation and data, the
statement pgreplica runs for it, the server's error and a hint.

To find that event, why applies the pending events in order (at most
batch.max_events) in a replica transaction that it always rolls back: it
changes nothing. An unreachable replica is reported as such.`,
		Example: `  pgreplica -c shop.yaml why
  pgreplica -c shop.yaml why --replica reporting --json | jq .replicas[0].failing_event`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			if only != "" {
				if _, err := cfg.Replica(only); err != nil {
					return usagef("--replica: %v", err)
				}
			}
			out, err := explain(cmd.Context(), cfg, only)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(out)
			}
			a.printWhy(out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {set, replicas: [{name, state, healthy, error, stuck_since, pending, pending_by_table, failing_event: {id, txid, table, op, key, data, statement, error, sqlstate, hint, behind}}]}")
	cmd.Flags().StringVar(&only, "replica", "", "explain replica `NAME` only (default: every replica)")
	return cmd
}

func explain(ctx context.Context, cfg *config.Config, only string) (whyJSON, error) {
	out := whyJSON{Set: cfg.Name}
	rep, err := replay.QueryStatus(ctx, cfg)
	if err != nil {
		return out, err
	}
	var live *status.Live
	if cfg.Control.Socket != "" {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := control.Dial(cfg.Control.Socket).Status(c); err == nil {
			live = &status.Live{Running: true, Replicas: st.Replicas}
		}
		cancel()
	}
	now := time.Now()
	for _, r := range status.Merge(replicaNames(cfg), &rep, live) {
		if only != "" && r.Name != only {
			continue
		}
		j := whyReplicaJSON{Name: r.Name, State: string(r.State), Error: r.Err, Pending: r.Pending}
		if r.State == status.File {
			j.Healthy = true
			j.Hint = "a file replica: changes travel in bundles (pgreplica export, import); see pgreplica status"
			out.Replicas = append(out.Replicas, j)
			continue
		}
		if !r.Position.Snapshot.IsZero() {
			j.Position = r.Position.Snapshot.String()
		}
		j.Healthy, _ = r.Healthy(now, cfg.Alerts.LagOver)
		// How long: since the daemon's worker entered its state, else
		// since the replica last applied something.
		var since time.Time
		switch {
		case r.Live && (r.State == status.Stopped || r.State == status.Retrying) && !r.StateSince.IsZero():
			since = r.StateSince
		case r.Live && r.NoProgressFor > 0:
			since = now.Add(-r.NoProgressFor)
		case r.Pending > 0 && !r.LastApplied.IsZero():
			since = r.LastApplied
		}
		if !since.IsZero() && !j.Healthy {
			j.StuckSince = &since
			j.StuckSeconds = float64(now.Sub(since).Milliseconds()) / 1000
		}
		switch {
		case r.State == status.Unreachable:
			j.Hint = "check that the replica's server is up and reachable; the engine retries by itself"
		case !j.Healthy:
			d, err := replay.Diagnose(ctx, cfg, r.Name, cfg.Batch.MaxEvents)
			if err != nil {
				j.Error = joinNonEmpty(j.Error, err.Error())
				break
			}
			j.Pending, j.PendingByTable, j.Tried = d.Pending, d.PendingByTable, d.Tried
			if !d.Oldest.IsZero() {
				j.OldestPendingAt = &d.Oldest
			}
			if f := d.Failing; f != nil {
				j.Failing = &failingJSON{ID: f.ID, Txid: f.Txid, CapturedAt: f.At, Table: f.Table, Op: f.Op,
					Key: rawJSON(f.Key), Data: rawJSON(f.Data), Statement: f.Statement, Error: f.Error,
					Detail: f.Detail, SQLState: f.SQLState, Hint: f.Hint, Behind: f.Behind}
				j.Hint = f.Hint
			} else if r.State == status.Stopped || r.State == status.Retrying {
				j.Hint = "every pending event applies now: pgreplica retry --replica " + r.Name + " (or wait for the engine's next retry)"
			} else if !r.Live {
				j.Hint = "no engine applies it: start pgreplica run (or pgreplica replicate)"
			}
		}
		out.Replicas = append(out.Replicas, j)
	}
	return out, nil
}

func rawJSON(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return json.RawMessage("null")
	}
	return json.RawMessage(s)
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (a *app) printWhy(out whyJSON) {
	for i, r := range out.Replicas {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		state := strings.ToUpper(r.State)
		if r.State == "" {
			state = "UNKNOWN"
		}
		line := fmt.Sprintf("replica %s: %s", r.Name, state)
		if r.StuckSince != nil {
			line += fmt.Sprintf(" for %s (since %s)", (time.Duration(r.StuckSeconds * float64(time.Second))).Round(time.Second),
				r.StuckSince.Local().Format("2006-01-02 15:04:05"))
		}
		if r.Healthy && r.Failing == nil {
			line += fmt.Sprintf(", %d events pending: nothing to explain", r.Pending)
		}
		fmt.Fprintln(a.stdout, line)
		if r.Error != "" {
			fmt.Fprintf(a.stdout, "  error:     %s\n", strings.TrimSpace(r.Error))
		}
		if f := r.Failing; f != nil {
			fmt.Fprintf(a.stdout, "  failing:   event %d (txid %d), %s on %s, captured %s\n", f.ID, f.Txid, f.Op, f.Table,
				f.CapturedAt.Local().Format("2006-01-02 15:04:05"))
			fmt.Fprintf(a.stdout, "  key:       %s\n", string(f.Key))
			if string(f.Data) != "null" {
				fmt.Fprintf(a.stdout, "  data:      %s\n", string(f.Data))
			}
			if f.Statement != "" {
				fmt.Fprintf(a.stdout, "  statement: %s\n", f.Statement)
			}
			server := f.Error
			if f.Detail != "" {
				server += " (" + strings.TrimSuffix(f.Detail, ".") + ")"
			}
			if f.SQLState != "" {
				server += " [SQLSTATE " + f.SQLState + "]"
			}
			fmt.Fprintf(a.stdout, "  server:    %s\n", server)
			fmt.Fprintf(a.stdout, "  behind it: %d events\n", f.Behind)
		} else if r.Pending > 0 && !r.Healthy {
			fmt.Fprintf(a.stdout, "  pending:   %d events; the first %d apply\n", r.Pending, r.Tried)
		}
		if len(r.PendingByTable) > 0 && !r.Healthy {
			var parts []string
			for _, t := range slices.Sorted(maps.Keys(r.PendingByTable)) {
				parts = append(parts, fmt.Sprintf("%s %d", t, r.PendingByTable[t]))
			}
			fmt.Fprintf(a.stdout, "  pending:   %s\n", strings.Join(parts, ", "))
		}
		if r.Hint != "" {
			fmt.Fprintf(a.stdout, "Try: %s\n", r.Hint)
		}
	}
}

// retryNow asks the running daemon to retry replica at once (retry
// --replica R without --table).
func (a *app) retryNow(ctx context.Context, replica string) error {
	cfg, err := a.loadConfigWithReplicas()
	if err != nil {
		return err
	}
	if _, err := cfg.Replica(replica); err != nil {
		return usagef("--replica: %v", err)
	}
	if cfg.Control.Socket == "" {
		return withHint(fmt.Errorf("control.socket is not set in %s: no way to reach the daemon", cfg.Path),
			"set control.socket (for example /run/pgreplica/"+cfg.Name+".sock) and restart the daemon")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := control.Dial(cfg.Control.Socket).Retry(ctx, replica); err != nil {
		return withHint(err, "is the daemon running? systemctl status pgreplica@"+cfg.Name)
	}
	fmt.Fprintf(a.stdout, "replica %s: retry asked; see pgreplica status\n", replica)
	return nil
}
