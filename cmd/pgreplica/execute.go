package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"pgreplica/core/capture"
	"pgreplica/core/replay"
	"pgreplica/core/who"
)

func (a *app) executeCommand() *cobra.Command {
	var sql string
	cmd := &cobra.Command{
		Use:   "execute [FILE]",
		Short: "Run a schema change on the origin and, in order, on every replica",
		Long: `Runs a SQL script (a schema change: ALTER TABLE, CREATE INDEX, ...) on the
origin in one transaction that also brings the capture of every table it
changes up to date and writes the script into the event log. Each replica
runs the same script in its apply transaction, exactly between the changes
committed before it and after it on the origin, so no event ever meets a table
of the wrong shape (Londiste's execute, Slony-I's EXECUTE SCRIPT).

The script's own data changes (an UPDATE that fills a new column) are not
captured: every replica runs the whole script itself. If the script fails on
the origin nothing changes anywhere; if it fails on a replica, that replica
stops with the statement and the server's message until it is fixed there
(then pgreplica retry) or moved past (pgreplica skip --event N).`,
		Example: "  pgreplica -c shop.yaml execute migrations/042_add_note.sql\n" +
			"  pgreplica -c shop.yaml execute -e 'ALTER TABLE public.orders ADD COLUMN note text' --yes",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			script, err := readScript(sql, args)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("Run this script on the origin and on %d replica(s)?\n%s\n", len(cfg.Replicas), indent(script))); err != nil {
				return err
			}
			_, err = capture.Execute(cmd.Context(), cfg, script, a.line)
			return err
		},
	}
	cmd.Flags().StringVarP(&sql, "sql", "e", "", "the SQL to run (instead of a FILE)")
	a.addYesFlag(cmd)
	return cmd
}

func readScript(sql string, args []string) (string, error) {
	switch {
	case sql != "" && len(args) > 0:
		return "", &usageError{"give a FILE or --sql SQL, not both"}
	case sql != "":
		return sql, nil
	case len(args) == 0:
		return "", &usageError{"give a FILE or --sql SQL"}
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return "", fmt.Errorf("read the script: %w", err)
	}
	return string(b), nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}

func (a *app) skipCommand() *cobra.Command {
	var replica, reason string
	var id int64
	cmd := &cobra.Command{
		Use:   "skip --replica R --event N",
		Short: "Move a stopped replica past one event (recorded, reapply-able)",
		Long: `Records event N (read from the origin's log) in pgreplica.skipped on replica R,
with who, when and why: the replay engine moves past it at its next attempt
(pgreplica retry makes that now) and never applies it. The replica then differs
from the origin by that change until pgreplica reapply applies it (after the
operator fixed what made it fail) or the table is copied again.`,
		Example: "  pgreplica -c shop.yaml skip --replica reporting --event 9912231 --reason 'row removed by hand' --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needEvent(replica, id); err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			s, err := replay.ReadEvent(cmd.Context(), cfg, replica, id)
			if err != nil {
				return err
			}
			s.Reason, s.By = reason, who.Local()
			if err := a.confirm(fmt.Sprintf("Skip %s on replica %s? It will differ from the origin until reapplied or resynced", s.Describe(), replica)); err != nil {
				return err
			}
			if err := replay.Skip(cmd.Context(), cfg, s); err != nil {
				return err
			}
			a.line(fmt.Sprintf("replica %s: skipped %s; undo with pgreplica reapply --replica %s --event %d", replica, s.Describe(), replica, id))
			return nil
		},
	}
	cmd.Flags().StringVar(&replica, "replica", "", "the replica")
	cmd.Flags().Int64Var(&id, "event", 0, "the event id (in the replica's error and pgreplica why)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	a.addYesFlag(cmd)
	return cmd
}

// needEvent is the check of skip's and reapply's two required flags.
func needEvent(replica string, id int64) error {
	if replica == "" || id <= 0 {
		return &usageError{"--replica and --event are required"}
	}
	return nil
}

func (a *app) reapplyCommand() *cobra.Command {
	var replica string
	var id int64
	cmd := &cobra.Command{
		Use:   "reapply --replica R --event N",
		Short: "Apply a skipped event now",
		Long: `Applies event N, skipped earlier on replica R (pgreplica skip), in one replica
transaction that also records when; for after the operator fixed what made it
fail. Nothing changes if it fails again.`,
		Example: "  pgreplica -c shop.yaml reapply --replica reporting --event 9912231",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needEvent(replica, id); err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			s, err := replay.Reapply(cmd.Context(), cfg, replica, id)
			if err != nil {
				return err
			}
			a.line(fmt.Sprintf("replica %s: applied %s", replica, s.Describe()))
			return nil
		},
	}
	cmd.Flags().StringVar(&replica, "replica", "", "the replica")
	cmd.Flags().Int64Var(&id, "event", 0, "the skipped event's id")
	return cmd
}

func (a *app) retryCommand() *cobra.Command {
	var replica string
	var tables []string
	cmd := &cobra.Command{
		Use:   "retry --table T [--replica R] | retry --replica R",
		Short: "Release a held table, or retry a stopped replica now",
		Long: `With --replica R alone: asks the running daemon, through its control socket
(control.socket), to retry the replica at once instead of waiting for the end
of its backoff (up to 30 seconds for a stopped replica). Use it after fixing
what stopped the replica (see pgreplica why).

With --table T: a table whose events a replica cannot apply (it lacks a
column, a NOT NULL column gets no value...) is held there: its events wait in pgreplica.held, in
order, while the other tables keep replicating (tables and status show it as
held, with the reason). Once you fixed the table on the replica, retry
releases it: the held events are applied first, at the engine's next batch,
then the table's new ones. If they still do not fit, the table is held again
and nothing is lost. (pgreplica sync --table T copies it again instead.)`,
		Example: "  pgreplica -c shop.yaml retry --replica reporting\n  pgreplica -c shop.yaml retry --table public.orders --replica reporting",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(tables) == 0 {
				if replica == "" {
					return &usageError{"--table T or --replica R is required"}
				}
				return a.retryNow(cmd.Context(), replica)
			}
			ts, err := parseTables(tables)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			released := 0
			for _, r := range cfg.Connected() {
				if replica != "" && r.Name != replica {
					continue
				}
				for _, t := range ts {
					ok, err := replay.RetryTable(cmd.Context(), cfg, r, t)
					if err != nil {
						return err
					}
					if ok {
						released++
						a.line(fmt.Sprintf("replica %s: released %s; its held events are applied at the engine's next batch", r.Name, t))
					}
				}
			}
			if released == 0 {
				return fmt.Errorf("no such table is held on %s", orAll(replica))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&replica, "replica", "", "only this replica (default: every replica where the table is held)")
	cmd.Flags().StringArrayVar(&tables, "table", nil, "the held table (repeatable)")
	return cmd
}

func orAll(replica string) string {
	if replica == "" {
		return "any replica"
	}
	return "replica " + replica
}
