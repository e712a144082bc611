package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/control"
	"pgreplica/core/copystate"
	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// statusJSON is the stable shape of `status --json`.
type statusJSON struct {
	Set           string              `json:"set"`
	Origin        string              `json:"origin"`
	DaemonRunning bool                `json:"daemon_running"`
	LogEvents     int64               `json:"log_events"`
	StaleCapture  []string            `json:"stale_capture"` // tables whose capture is stale: run install
	Replicas      []replicaStatusJSON `json:"replicas"`
}

type replicaStatusJSON struct {
	Name          string                     `json:"name"`
	State         string                     `json:"state"`
	Position      string                     `json:"position"`
	Pending       *int64                     `json:"pending"` // null when the position could not be read
	LagSeconds    float64                    `json:"lag_seconds"`
	LastAppliedAt *string                    `json:"last_applied_at"`
	Conflicts     int64                      `json:"conflicts"`
	NoProgressS   *float64                   `json:"no_progress_seconds,omitempty"` // the daemon applied nothing for this long
	Holder        string                     `json:"standby_for,omitempty"`         // standby: the engine that applies it
	Error         string                     `json:"error,omitempty"`
	Tables        map[string]copystate.State `json:"tables_syncing,omitempty"`
	File          *fileStatusJSON            `json:"file,omitempty"`
}

// fileStatusJSON is a file replica's bundles, as the origin knows them.
type fileStatusJSON struct {
	LastBundle     int64   `json:"last_bundle"`
	LastExportedAt *string `json:"last_exported_at"`
	LastFile       string  `json:"last_file,omitempty"`
	Exported       string  `json:"exported_position"`
	Unexported     int64   `json:"unexported_events"`
	Unacknowledged int64   `json:"unacknowledged_bundles"`
	AckedBundle    int64   `json:"acknowledged_bundle"`
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where each replica stands: position, pending events, lag, conflicts",
		Long: `Reads, from the databases themselves, where each replica stands: its position,
the events captured and not yet applied there, the lag (the age of the oldest
of them, 0 when caught up), when it last applied a batch, the conflicts
recorded there, and whether a pgreplica engine is running for the set. With
control.socket set and a daemon listening, the daemon's view of each replica
(streaming, catchup, retrying, stopped, standby) is shown too, with "no
progress for N s" when the daemon has applied nothing for a while although
events may be pending (a dead network path, a stuck server). Pending is "-"
(null in JSON) when the replica's position cannot be read. A file replica (file:
true) is read from the origin alone: its position is the one last
acknowledged (pgreplica ack), and its last exported bundle, the events
waiting for the next export and the bundles not yet acknowledged are shown.`,
		Example: "  pgreplica -c shop.yaml status\n  pgreplica -c shop.yaml status --json | jq '.replicas[] | {name, lag_seconds}'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			var live *status.Live
			if cfg.Control.Socket != "" {
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
				if st, err := control.Dial(cfg.Control.Socket).Status(ctx); err == nil {
					live = &status.Live{Running: true, Replicas: st.Replicas}
				}
				cancel()
			}
			rep, err := replay.QueryStatusStale(cmd.Context(), cfg)
			if err != nil {
				// The origin cannot be read: say at least what the daemon sees.
				for _, r := range status.Merge(nil, nil, live) {
					line := fmt.Sprintf("the daemon reports replica %s %s", r.Name, r.State)
					if r.NoProgressFor > 0 {
						line += fmt.Sprintf(", no progress for %.0f s", r.NoProgressFor.Seconds())
					}
					if r.Err != "" {
						line += ": " + r.Err
					}
					fmt.Fprintln(a.stderr, line)
				}
				return err
			}
			out := statusJSON{Set: rep.Set, Origin: rep.Origin, DaemonRunning: rep.DaemonRunning, LogEvents: rep.LogEvents,
				StaleCapture: append([]string{}, rep.Stale...)}
			for _, r := range status.Merge(nil, &rep, live) {
				j := replicaStatusJSON{Name: r.Name, State: string(r.State), Position: r.Position.Snapshot.String(),
					LagSeconds: math.Round(r.Lag.Seconds()*1000) / 1000, Conflicts: r.Conflicts, Error: r.Err, Tables: r.Tables, Holder: r.Holder}
				if !r.PendingUnknown {
					j.Pending = &r.Pending
				}
				if r.NoProgressFor > 0 {
					secs := r.NoProgressFor.Seconds()
					j.NoProgressS = &secs
				}
				if f := r.File; f != nil {
					j.File = &fileStatusJSON{LastBundle: f.LastBundle, LastFile: f.LastFile, Unexported: f.Unexported,
						Unacknowledged: f.Unacknowledged, AckedBundle: f.AckedBundle}
					if !f.Exported.Snapshot.IsZero() {
						j.File.Exported = f.Exported.Snapshot.String()
					}
					if !f.LastExportedAt.IsZero() {
						at := f.LastExportedAt.UTC().Format(time.RFC3339)
						j.File.LastExportedAt = &at
					}
				}
				if r.Position.Snapshot.IsZero() {
					j.Position = ""
				}
				if !r.LastApplied.IsZero() {
					s := r.LastApplied.UTC().Format(time.RFC3339)
					j.LastAppliedAt = &s
				}
				out.Replicas = append(out.Replicas, j)
			}
			if asJSON {
				return a.printJSON(out)
			}
			daemon := "no engine running"
			if rep.DaemonRunning {
				daemon = "engine running"
			}
			fmt.Fprintf(a.stdout, "set %s · origin %s · %s · %d events in the log\n\n", out.Set, out.Origin, daemon, out.LogEvents)
			for _, t := range out.StaleCapture {
				fmt.Fprintf(a.stdout, "capture is stale for %s: run pgreplica install (a column added since is not replicated)\n\n", t)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "REPLICA\tSTATE\tPENDING\tLAG\tLAST APPLIED\tCONFLICTS")
			for _, r := range out.Replicas {
				last := "-"
				if r.LastAppliedAt != nil {
					t, _ := time.Parse(time.RFC3339, *r.LastAppliedAt)
					last = t.Local().Format("2006-01-02 15:04:05")
				}
				state, pending := r.State, "-"
				if r.NoProgressS != nil {
					state += fmt.Sprintf(" · no progress for %.0f s", *r.NoProgressS)
				}
				if r.Pending != nil {
					pending = fmt.Sprint(*r.Pending)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", r.Name, state, pending, lagText(r.LagSeconds), last, r.Conflicts)
			}
			w.Flush()
			for _, r := range out.Replicas {
				if r.Error != "" {
					fmt.Fprintf(a.stdout, "\n%s: %s\n", r.Name, strings.TrimSpace(r.Error))
				}
				if r.Holder != "" {
					fmt.Fprintf(a.stdout, "\n%s: this daemon is a standby; the replica is applied by %s\n", r.Name, r.Holder)
				}
				if f := r.File; f != nil {
					last := "no bundle exported yet"
					if f.LastBundle > 0 {
						t, _ := time.Parse(time.RFC3339, *f.LastExportedAt)
						last = fmt.Sprintf("last bundle %d (%s) exported %s", f.LastBundle, f.LastFile, t.Local().Format("2006-01-02 15:04:05"))
					}
					fmt.Fprintf(a.stdout, "\n%s: file replica · %s · %d events waiting for the next export · %d bundles not acknowledged (last acknowledged: %d)\n",
						r.Name, last, f.Unexported, f.Unacknowledged, f.AckedBundle)
				}
				for t, st := range r.Tables {
					fmt.Fprintf(a.stdout, "%s: %s is %s\n", r.Name, t, st)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {set, origin, daemon_running, log_events, replicas: [{name, state, position, pending (null when unknown), lag_seconds, last_applied_at, conflicts, no_progress_seconds, standby_for, error, file}]}")
	return cmd
}

func lagText(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 120:
		return fmt.Sprintf("%.1fs", s)
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}
