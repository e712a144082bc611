package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/backup"
	"pgreplica/core/config"
	"pgreplica/core/conflict"
	checkpkg "pgreplica/core/preflight"
	"pgreplica/core/smoke"
)

// The wizard's steps as commands: check, conflicts, backup, smoke.

// checkJSON is the stable shape of `check --json`.
type checkJSON struct {
	Status   string             `json:"status"` // ok, warn or fail
	Nodes    []string           `json:"nodes"`
	Checks   []checkResultJSON  `json:"checks"`
	Findings []checkpkg.Finding `json:"findings"`
}

type checkResultJSON struct {
	Check    string            `json:"check"`
	Severity string            `json:"severity"`
	Values   map[string]string `json:"values"` // node -> value
}

func (a *app) checkCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check servers, privileges and tables before install (read-only)",
		Long: `Connects to the origin and every replica and checks what pgreplica needs:
each server reachable and PostgreSQL 13 or newer, CREATE on each database,
TRIGGER on the origin's tables, every origin table present on every replica
(and every captured table: a missing one stops replication), a pg_dump
client for the origin's version, primary keys, and the servers' clocks.
These are the install wizard's first step. Nothing is changed.

Exit code 0 when nothing blocks (warnings, such as a table without a primary
key, do not change it), 3 when something does.`,
		Example: "  pgreplica -c shop.yaml check\n  pgreplica -c shop.yaml check --json | jq '.findings[] | select(.severity == \"fail\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			rep := checkpkg.Run(cmd.Context(), cfg)
			if asJSON {
				out := checkJSON{Status: string(rep.Status()), Nodes: rep.Nodes, Findings: rep.Findings}
				if out.Findings == nil {
					out.Findings = []checkpkg.Finding{}
				}
				for _, r := range rep.Results {
					j := checkResultJSON{Check: r.Check, Severity: string(r.Severity), Values: map[string]string{}}
					for i, v := range r.Values {
						if i < len(rep.Nodes) {
							j.Values[rep.Nodes[i]] = v
						}
					}
					out.Checks = append(out.Checks, j)
				}
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else {
				a.printCheck(rep)
			}
			if rep.Status() == checkpkg.Fail {
				fails, _ := rep.Blocking()
				return &codeError{code: exitProblems, err: fmt.Errorf("check found %d blocking %s", fails, plural(fails, "problem", "problems"))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {status, nodes, checks: [{check, severity, values: {node: value}}], findings: [{check, node, severity, problem, try, table}]}")
	return cmd
}

func (a *app) printCheck(rep checkpkg.Report) {
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\tCHECK\t%s\n", strings.ToUpper(strings.Join(rep.Nodes, "\t")))
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.Severity.Label(), r.Check, strings.Join(r.Values, "\t"))
	}
	w.Flush()
	if len(rep.Findings) > 0 {
		a.line("")
	}
	for _, f := range rep.Findings {
		a.line(f.Severity.Label() + " " + f.Problem)
		if f.Try != "" {
			a.line("  Try: " + f.Try)
		}
	}
	fails, warns := rep.Blocking()
	switch {
	case fails > 0:
		a.line(fmt.Sprintf("\n%d blocking, %d %s · nothing was changed", fails, warns, plural(warns, "warning", "warnings")))
	case warns > 0:
		a.line(fmt.Sprintf("\nready, %d %s · nothing was changed", warns, plural(warns, "warning", "warnings")))
	default:
		a.line("\nready · nothing was changed")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// conflictJSON is one conflict in `conflicts --json`.
type conflictJSON struct {
	Replica    string            `json:"replica"`
	ID         int64             `json:"id"`
	Event      int64             `json:"event"`
	Txid       string            `json:"txid"`
	Table      string            `json:"table"`
	Op         string            `json:"op"`
	Kind       string            `json:"kind"`
	At         string            `json:"at"`
	Key        map[string]string `json:"key"`
	Captured   map[string]string `json:"captured"`
	ReplicaRow map[string]string `json:"replica_row"` // null when the replica has no row for the key
	RowError   string            `json:"row_error,omitempty"`
	// Multi-master only (replica is then the direction, "a->b").
	LocalRow      map[string]string `json:"local_row,omitempty"` // the target's row when the conflict was met
	LocalVersion  json.RawMessage   `json:"local_version,omitempty"`
	RemoteVersion json.RawMessage   `json:"remote_version,omitempty"`
	Policy        string            `json:"policy,omitempty"`
	Winner        json.RawMessage   `json:"winner,omitempty"`  // the winning version: the same on every node
	Outcome       string            `json:"outcome,omitempty"` // applied (the remote change) or kept (the local row)
	Review        string            `json:"review,omitempty"`  // keep or other, once reviewed
	ReviewedAt    string            `json:"reviewed_at,omitempty"`
}

// optJSON is s as raw JSON, or nil (left out) when empty.
func optJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func (a *app) conflictsCommand() *cobra.Command {
	var asJSON bool
	var replica string
	cmd := &cobra.Command{
		Use:   "conflicts",
		Short: "List the recorded conflicts with each replica's current row",
		Long: `Lists the conflict ledger (pgreplica.conflict) of every replica, newest first:
the UPDATEs and DELETEs that found no row on the replica and were applied
there as no-ops, each with the captured change and the replica's current row
for its key (none, when the row is still missing). At most 500 per replica.`,
		Example: "  pgreplica -c shop.yaml conflicts\n  pgreplica -c shop.yaml conflicts --replica reporting --json | jq '.[] | {table, key, replica_row}'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			if replica != "" && !cfg.MultiMaster() {
				if _, err := cfg.Replica(replica); err != nil {
					return usagef("%v", err)
				}
			}
			cs, errs := conflict.ListWithRows(cmd.Context(), cfg, replica, "conflicts")
			if asJSON {
				out := []conflictJSON{}
				for _, c := range cs {
					j := conflictJSON{Replica: c.Replica, ID: c.ID, Event: c.EventID, Txid: c.Txid, Table: c.Table.String(), Op: c.Op,
						Kind: c.Kind, At: c.At.UTC().Format(time.RFC3339), Key: conflict.Flatten(c.Key), Captured: conflict.Flatten(c.Data),
						ReplicaRow: c.Current}
					if c.RowErr != nil {
						j.RowError = c.RowErr.Error()
					}
					if c.Outcome != "" {
						j.LocalRow = conflict.Flatten(c.LocalRow)
						j.LocalVersion, j.RemoteVersion, j.Winner = optJSON(c.LocalVersion), optJSON(c.RemoteVersion), optJSON(c.Winner)
						j.Policy, j.Outcome, j.Review = c.Policy, c.Outcome, c.Review
						if c.ReviewedAt != nil {
							j.ReviewedAt = c.ReviewedAt.UTC().Format(time.RFC3339)
						}
					}
					out = append(out, j)
				}
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else {
				a.printConflicts(cs)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: [{replica, id, event, txid, table, op, kind, at, key, captured, replica_row}]; on a multi-master set also local_row, local_version, remote_version, policy, winner, outcome, review, reviewed_at")
	cmd.Flags().StringVar(&replica, "replica", "", "only the conflicts of replica `NAME` (multi-master: a direction a->b, or a node)")
	cmd.AddCommand(a.conflictsResolveCommand())
	return cmd
}

func (a *app) conflictsResolveCommand() *cobra.Command {
	var on string
	cmd := &cobra.Command{
		Use:   "resolve ID keep|other",
		Short: "Keep a multi-master conflict's outcome, or take the other version",
		Long: `Reviews conflict ID of direction --replica A->B (as 'pgreplica conflicts' lists
it). keep leaves the outcome as it is. other writes the version that lost on
node B as an ordinary change (the local row if the remote change was applied,
the remote row if the local one was kept; deleted if that version had no
row): it is captured there, is newer than every node's version, and so
reaches every node and wins. Either way the conflict is marked reviewed on
every node that recorded it.`,
		Example: "  pgreplica -c mesh.yaml conflicts resolve --replica paris->tokyo 17 keep\n  pgreplica -c mesh.yaml conflicts resolve --replica paris->tokyo 18 other",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("conflict ID: want a positive number (got %q)", args[0])
			}
			if args[1] != conflict.Keep && args[1] != conflict.Other {
				return usagef("want keep or other (got %q)", args[1])
			}
			if on == "" {
				return usagef("--replica A->B: the direction whose ledger holds conflict %d (pgreplica conflicts lists them)", id)
			}
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			if !cfg.MultiMaster() {
				return usagef("conflicts resolve is for a multi-master set (nodes:)")
			}
			cs, errs := conflict.List(cmd.Context(), cfg, on, "conflicts resolve")
			if err := errors.Join(errs...); err != nil {
				return err
			}
			for _, c := range cs {
				if c.ID == id && c.Replica == on {
					did, err := conflict.Resolve(cmd.Context(), cfg, c, args[1], "conflicts resolve")
					if err != nil {
						return err
					}
					a.line(did)
					return nil
				}
			}
			return fmt.Errorf("no conflict %d recorded for %s (pgreplica conflicts --replica %s lists them)", id, on, on)
		},
	}
	cmd.Flags().StringVar(&on, "replica", "", "the direction `A->B` whose ledger holds the conflict")
	return cmd
}

func (a *app) printConflicts(cs []conflict.WithRows) {
	if len(cs) == 0 {
		a.line("no conflicts recorded")
		return
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "REPLICA\tAT\tTABLE\tOP\tKIND\tKEY\tREPLICA ROW")
	for _, c := range cs {
		row := "none"
		switch {
		case c.RowErr != nil:
			row = "? " + c.RowErr.Error()
		case c.Current != nil:
			row = fields(c.Current)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Replica, c.At.Local().Format("2006-01-02 15:04:05"), c.Table, c.Op, c.Kind,
			fields(conflict.Flatten(c.Key)), row)
	}
	w.Flush()
}

// fields is a row as "k=v k=v", keys sorted.
func fields(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func (a *app) backupCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Dump the origin with pg_dump (custom format) before installing",
		Long: `Runs pg_dump of the origin's version (found in /usr/lib/postgresql/N/bin or on
PATH) to DIR/DB-YYYYMMDDTHHMMSS.dump in pg_dump's custom format: the way back
if an install goes wrong (restore with pg_restore). The file is readable by
its owner only (mode 0600). The install wizard's second step.`,
		Example: "  pgreplica -c shop.yaml backup --to /var/backups/pgreplica\n  pg_restore --list /var/backups/pgreplica/shop-20260101T120000.dump | head",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			opt, client, err := backup.ForOrigin(cmd.Context(), cfg, dir, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "dumping %s with %s to %s\n", config.Describe(cfg.Origin.DSN), client.Text, opt.File)
			if err := backup.Run(cmd.Context(), opt, nil); err != nil {
				return err
			}
			st, err := os.Stat(opt.File)
			if err != nil {
				return err
			}
			a.line(fmt.Sprintf("backup written: %s (%s)", opt.File, byteSize(st.Size())))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "to", ".", "write the dump into `DIR`")
	return cmd
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func (a *app) smokeCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "smoke",
		Short: "Prove replication works: a test row inserted, updated, deleted",
		Long: `Creates the test table public.pgreplica_smoke on the origin and every replica,
captures it, then INSERTs, UPDATEs and DELETEs a row on the origin and times
each change until every replica shows it; then drops the table again. When
a pgreplica engine (the daemon) replays the set it is used; otherwise an
engine runs in this process for the test. The install wizard's sixth step.

Exit code 0 when every change reached every replica, 3 when one did not
(the diagnosis says why).`,
		Example: "  pgreplica -c shop.yaml smoke\n  pgreplica -c shop.yaml smoke --timeout 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			startEngine := true
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if smoke.EngineRunning(qctx, cfg) {
				startEngine = false
				fmt.Fprintln(a.stderr, "a pgreplica engine is already replaying this set: using it")
			}
			cancel()
			res, err := smoke.Run(ctx, cfg, smoke.Options{Timeout: timeout, StartEngine: startEngine, Log: a.logger(slog.LevelWarn)},
				func(s smoke.Step) {
					if s.OK() {
						a.line(fmt.Sprintf("%-6s seen on %s after %s", s.Op, s.Replica, s.Took.Round(time.Millisecond)))
					} else {
						a.line(fmt.Sprintf("%-6s NOT seen on %s: %s", s.Op, s.Replica, s.Err))
					}
				},
				func(s string) { fmt.Fprintln(a.stderr, s) })
			if err != nil {
				return err
			}
			if res.Cleanup != "" {
				fmt.Fprintln(a.stderr, res.Cleanup)
			}
			if !res.OK() {
				if res.Diagnosis != "" {
					a.line(res.Diagnosis)
				}
				return &codeError{code: exitProblems, err: errors.New("smoke test failed: a change did not reach every replica")}
			}
			a.line("smoke test passed")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long each change may take to reach every replica")
	return cmd
}
