package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/copystate"
	"pgreplica/core/replay"
	"pgreplica/core/rule"
	"pgreplica/core/status"
	"pgreplica/core/switchover"
)

// statusJSON is the stable shape of `status --json`.
type statusJSON struct {
	Set           string   `json:"set"`
	Origin        string   `json:"origin"`
	DaemonRunning bool     `json:"daemon_running"`
	LogEvents     int64    `json:"log_events"`
	Health        string   `json:"health"`        // ok, warning, critical, no_engine
	Reason        string   `json:"reason"`        // why, in words
	ExitCode      int      `json:"exit_code"`     // the command's exit code
	StaleCapture  []string `json:"stale_capture"` // tables whose capture is stale: run install
	// Rules: the replicas' table rules that need the operator ("replica
	// eu: public.customers: needs re-copy under its rule: pgreplica sync ...").
	Rules []string `json:"rules,omitempty"`
	// Switchover: a switchover under way (its state file is next to the
	// config): the origin's replicated tables refuse writes until it ends.
	Switchover string              `json:"switchover,omitempty"`
	Replicas   []replicaStatusJSON `json:"replicas"`
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

// Exit codes of status (besides exitErr when nothing could be read and
// exitUsage), Nagios-like from the worst replica: see statusExit.
const (
	statusWarning  = 3 // a replica is catching up, retrying or starting, makes no progress, or lags more than --max-lag
	statusCritical = 4 // a replica is stopped, unreachable or in error, or holds a table; a switchover is under way
	statusNoEngine = 5 // no pgreplica engine runs for the set: nothing is replicated
)

const statusExit = `

Exit codes, for scripts and monitoring (the worst case wins, in this order):
  0  every replica is streaming or caught up (behind, while an engine runs,
     counts as streaming; so do a standby and a file replica), within
     --max-lag when given
  4  a replica is stopped, unreachable or in error, or holds a table; or a
     switchover is under way
  5  no pgreplica engine runs for the set: nothing is being replicated
     (a set of file replicas only needs none)
  3  a replica is catching up, retrying or starting, makes no progress, or
     lags more than --max-lag; or a table's capture is stale
  1  the status could not be read (origin unreachable, not installed, timeout)
  2  usage error
The read is bounded by --timeout (default 10s), also against a server that
accepts connections and never answers.`

// statusHealth is the exit code for the replicas and why: see statusExit.
func statusHealth(rs []status.Replica, engine bool, maxLag time.Duration) (int, string) {
	if w, ok := status.Worst(rs); ok && w.State.Problem() {
		return statusCritical, fmt.Sprintf("replica %s is %s", w.Name, w.State)
	}
	for _, r := range rs {
		for t, st := range r.Tables {
			if st == copystate.Held {
				return statusCritical, fmt.Sprintf("replica %s holds table %s: its events do not fit the table there (fix it, then pgreplica retry --table %s)", r.Name, t, t)
			}
		}
	}
	if !engine {
		for _, r := range rs {
			if r.State != status.File { // file replicas need no engine
				return statusNoEngine, "no pgreplica engine runs for the set"
			}
		}
	}
	for _, r := range rs {
		switch {
		case r.State == status.Retrying || r.State == status.Starting || r.State == status.Unknown:
			return statusWarning, fmt.Sprintf("replica %s is %s", r.Name, stateName(r.State))
		case r.NoProgressFor > 0:
			return statusWarning, fmt.Sprintf("replica %s made no progress for %.0f s", r.Name, r.NoProgressFor.Seconds())
		case r.State == status.Catchup && maxLag == 0:
			return statusWarning, fmt.Sprintf("replica %s is catching up (%d events pending)", r.Name, r.Pending)
		case maxLag > 0 && r.Lag > maxLag:
			return statusWarning, fmt.Sprintf("replica %s lags %s, more than --max-lag %s", r.Name, r.Lag.Round(time.Millisecond), maxLag)
		}
	}
	return exitOK, "every replica is streaming or caught up"
}

func stateName(s status.State) string {
	if s == status.Unknown {
		return "in an unknown state"
	}
	return string(s)
}

func healthWord(code int) string {
	switch code {
	case exitOK:
		return "ok"
	case statusWarning:
		return "warning"
	case statusCritical:
		return "critical"
	case statusNoEngine:
		return "no_engine"
	}
	return "unknown"
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	var maxLag, watch, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Where each replica stands: position, pending, lag, conflicts",
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
waiting for the next export and the bundles not yet acknowledged are shown.` + statusExit,
		Example: "  pgreplica -c shop.yaml status\n  pgreplica -c shop.yaml status --max-lag 30s || page-the-dba\n" +
			"  pgreplica -c shop.yaml status --watch 2s\n  pgreplica -c shop.yaml status --json | jq '.replicas[] | {name, lag_seconds}'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxLag < 0 || watch < 0 || timeout <= 0 {
				return usagef("--max-lag and --watch must not be negative, --timeout must be positive")
			}
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			code := exitOK
			for {
				code, err = a.statusOnce(cmd.Context(), cfg, asJSON, maxLag, timeout, watch > 0)
				if watch == 0 {
					break
				}
				if err != nil {
					printError(a.stderr, err)
					code = exitErr
				}
				select {
				case <-cmd.Context().Done():
					return &codeError{code: code}
				case <-time.After(watch):
				}
			}
			if err != nil {
				return err
			}
			if code != exitOK {
				return &codeError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {set, origin, daemon_running, log_events, health, reason, exit_code, replicas: [{name, state, position, pending (null when unknown), lag_seconds, last_applied_at, conflicts, no_progress_seconds, standby_for, error, file}]}")
	cmd.Flags().DurationVar(&maxLag, "max-lag", 0, "exit 3 when a replica lags more than this (e.g. 30s); 0: no limit")
	cmd.Flags().DurationVar(&watch, "watch", 0, "print the status again every interval (e.g. 2s) until interrupted; exits with the last status's code")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up reading the status after this long (exit 1)")
	return cmd
}

// statusOnce reads and prints the status once and returns its exit code.
func (a *app) statusOnce(parent context.Context, cfg *config.Config, asJSON bool, maxLag, timeout time.Duration, stamp bool) (int, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var live *status.Live
	if cfg.Control.Socket != "" {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := control.Dial(cfg.Control.Socket).Status(cctx); err == nil {
			live = &status.Live{Running: true, Replicas: st.Replicas}
		}
		ccancel()
	}
	rep, err := replay.QueryStatusStale(ctx, cfg)
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
		if ctx.Err() != nil && parent.Err() == nil {
			return exitErr, withHint(fmt.Errorf("read status: no answer within %s: %w", timeout, err),
				"check that the servers answer (pgreplica check); a connect_timeout in the DSN bounds each connection")
		}
		return exitErr, err
	}
	rs := status.Merge(nil, &rep, live)
	code, reason := statusHealth(rs, rep.DaemonRunning || live != nil, maxLag)
	if code == exitOK && len(rep.Stale) > 0 {
		code, reason = statusWarning, fmt.Sprintf("capture is stale for %s: run pgreplica install", strings.Join(rep.Stale, ", "))
	}
	var ruleLines []string
	if rule.Any(cfg) {
		states, _ := rule.States(ctx, cfg) // a replica that cannot be read is reported above
		for _, s := range states {
			if p := s.Problem(); p != "" {
				ruleLines = append(ruleLines, "replica "+s.Replica+": "+s.Table.String()+": "+p)
			}
		}
	}
	if code == exitOK && len(ruleLines) > 0 {
		code, reason = statusWarning, ruleLines[0]
	}
	var under string
	if path, err := a.configFile(); err == nil && path != "" {
		if st, err := switchover.ReadState(path); err != nil {
			under = err.Error()
		} else if st != nil {
			under = fmt.Sprintf("a switchover of set %s to %s is under way (done: %s): the origin refuses writes to the replicated tables; finish it with pgreplica switchover --resume or undo it with --abort", st.Set, st.To, st.Done)
		}
	}
	if under != "" {
		// The switchover is why nothing applies (it stops the daemon).
		if code < statusCritical || code == statusNoEngine {
			code = statusCritical
		}
		reason = under
	}
	out := statusJSON{Set: rep.Set, Origin: rep.Origin, DaemonRunning: rep.DaemonRunning, LogEvents: rep.LogEvents,
		Health: healthWord(code), Reason: reason, ExitCode: code, StaleCapture: append([]string{}, rep.Stale...), Rules: ruleLines,
		Switchover: under}
	for _, r := range rs {
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
		return code, a.printJSONLine(out, stamp)
	}
	if stamp {
		fmt.Fprintf(a.stdout, "── %s ──\n", time.Now().Format("2006-01-02 15:04:05"))
	}
	daemon := "no engine running"
	if rep.DaemonRunning {
		daemon = "engine running"
	}
	fmt.Fprintf(a.stdout, "set %s · origin %s · %s · %d events in the log\n\n", out.Set, out.Origin, daemon, out.LogEvents)
	for _, t := range out.StaleCapture {
		fmt.Fprintf(a.stdout, "capture is stale for %s: run pgreplica install (a column added since is not replicated)\n\n", t)
	}
	for _, l := range out.Rules {
		fmt.Fprintf(a.stdout, "%s\n\n", l)
	}
	if out.Switchover != "" {
		fmt.Fprintf(a.stdout, "%s\n\n", out.Switchover)
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
	fmt.Fprintf(a.stdout, "\n%s: %s (exit %d)\n", out.Health, reason, code)
	return code, nil
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

// printJSONLine prints v as indented JSON, or as one line per value when
// watching (a stream of objects that jq reads).
func (a *app) printJSONLine(v any, oneLine bool) error {
	if !oneLine {
		return a.printJSON(v)
	}
	return json.NewEncoder(a.stdout).Encode(v)
}
