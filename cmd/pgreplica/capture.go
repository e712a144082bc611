package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/copystate"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/rule"
	"pgreplica/core/tablecopy"
)

func (a *app) installCommand() *cobra.Command {
	var disableTriggers bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade capture on the origin, bookkeeping on replicas",
		Long: `Installs the pgreplica schema and the capture triggers on every selected table
of the origin (tables.include/exclude), and the bookkeeping schema on each
replica. Everything is checked first (connections, versions, that each replica
has every captured table and column); nothing is changed if a check fails.
Re-running it is safe and changes nothing that is current.

A replica starts replicating from the moment of install: give it the same data
first (pgreplica sync copies it online).

Where a replica's apply role cannot set session_replication_role (it needs a
superuser, or on PostgreSQL 15+ GRANT SET ON PARAMETER), the replica's own
triggers and foreign-key actions run on every applied change; install lists
them. --disable-replica-triggers then disables those triggers on the
replicated tables (ALTER TABLE ... DISABLE TRIGGER, as the tables' owner).

A table whose capture was removed (remove-table) is left out with an error:
copy it again with add-table --sync, or take it back with --no-sync.

On a multi-master set (nodes:) every node gets both: its own writes are
captured and every other node's applied. Every node is reached first; the
replicated tables' sequences must not be able to give the same value on two
nodes (distinct ranges, or INCREMENT BY the number of nodes with an offset
per node): a sequence at risk is an error that names it, and with --yes
install sets such sequences to step by the number of nodes, each node from
its own offset, past every node's last value.`,
		Example: "  pgreplica -c shop.yaml install\n  pgreplica -c shop.yaml install --disable-replica-triggers --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if cfg.MultiMaster() {
				if err := capture.CheckNodes(cmd.Context(), cfg); err != nil {
					return err
				}
			}
			typos, err := capture.UnmatchedIncludes(cmd.Context(), cfg.Directions("")[0], "install")
			if err != nil {
				return err
			}
			if len(typos) > 0 {
				return withHint(fmt.Errorf("%s; nothing was installed", strings.Join(typos, "; ")),
					"fix tables.include in "+cfg.Path+" (pgreplica tables lists what the patterns select)")
			}
			if disableTriggers {
				if err := a.confirm("Disable the replicas' own triggers on the replicated tables where the apply role cannot skip them?"); err != nil {
					return err
				}
			}
			return capture.InstallWith(cmd.Context(), cfg, capture.Options{DisableReplicaTriggers: disableTriggers, FixSequences: a.yes}, a.line)
		},
	}
	cmd.Flags().BoolVar(&disableTriggers, "disable-replica-triggers", false, "disable the replicas' own user triggers on replicated tables where the apply role cannot skip them (asks first)")
	a.addYesFlag(cmd)
	return cmd
}

func (a *app) uninstallCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove triggers and the pgreplica schema everywhere",
		Long: `Removes the capture triggers from every table of the origin and drops the
pgreplica schema (event log, positions, conflicts) from the origin and every
replica. Application tables and rows are not touched. Events not yet applied
are lost: run 'pgreplica replicate --once' first to apply them.`,
		Example: "  pgreplica -c shop.yaml uninstall --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("Remove pgreplica from the origin and %d replica(s)?", len(cfg.Replicas))); err != nil {
				return err
			}
			return capture.Uninstall(cmd.Context(), cfg, a.line)
		},
	}
	a.addYesFlag(cmd)
	return cmd
}

// tableJSON is one line of `tables --json`.
type tableJSON struct {
	Table       string              `json:"table"`
	Key         []string            `json:"key"`
	KeyIndex    string              `json:"key_index,omitempty"` // "primary" or "unique"
	Status      string              `json:"status"`
	State       string              `json:"state"`
	Replicas    map[string]string   `json:"replicas,omitempty"`
	Pending     int64               `json:"pending"`
	LastEventAt *string             `json:"last_event_at"`
	Sequences   []sequenceJSON      `json:"sequences,omitempty"`
	Fenced      []string            `json:"fenced_on,omitempty"` // replicas where writes to it are refused (protect)
	Rules       map[string]ruleJSON `json:"rules,omitempty"`     // per replica, its rule for the table (replicas[].tables)
	Node        string              `json:"node,omitempty"`      // multi-master: the node that captures it (replicas: the others)
}

// ruleJSON is a replica's rule for a table in `tables --json`.
type ruleJSON struct {
	Where       string            `json:"where,omitempty"`
	Include     []string          `json:"include,omitempty"`
	Exclude     []string          `json:"exclude,omitempty"`
	Rename      map[string]string `json:"rename,omitempty"`
	Target      string            `json:"target,omitempty"`
	Transform   map[string]string `json:"transform,omitempty"`
	Hash        string            `json:"hash"`           // "" when the config has no rule (any more)
	Installed   string            `json:"installed_hash"` // the rule capture follows on the origin
	Copied      string            `json:"copied_hash"`    // the rule of the replica's last copy
	NeedsRecopy bool              `json:"needs_recopy"`
	Problem     string            `json:"problem,omitempty"`
}

func ruleOf(s rule.State) ruleJSON {
	j := ruleJSON{Hash: s.Hash, Installed: s.Installed, Copied: s.Copied, Problem: s.Problem(),
		NeedsRecopy: s.Hash == s.Installed && s.Hash != s.Copied}
	if r := s.Rule; r != nil {
		j.Where, j.Include, j.Exclude, j.Rename = r.Where, r.Columns.Include, r.Columns.Exclude, r.Rename
		j.Target, j.Transform = r.Target, r.Transform
	}
	return j
}

// sequenceJSON is a table's sequence in `tables --json`.
type sequenceJSON struct {
	Name     string            `json:"name"`
	Origin   *int64            `json:"origin"`
	Replicas map[string]*int64 `json:"replicas"`
}

// tableStates returns, per table, its copy state on each replica
// (copying, catchup) and the state to show: the least advanced of them
// (copystate.Least), replicating when captured and no copy is under way,
// "-" otherwise.
func tableStates(ctx context.Context, cfg *config.Config, tables []capture.TableInfo) (map[pg.Table]string, map[pg.Table]map[string]string) {
	shown := map[pg.Table]string{}
	per := map[pg.Table]map[string]string{}
	var rep replay.Report
	if len(cfg.Replicas) > 0 {
		rep, _ = replay.QueryStatus(ctx, cfg) // not installed or unreachable: no copy states
	}
	for _, t := range tables {
		var states []copystate.State
		for _, r := range rep.Replicas {
			st, ok := r.TableStates[t.Table.String()]
			if !ok {
				continue
			}
			if per[t.Table] == nil {
				per[t.Table] = map[string]string{}
			}
			per[t.Table][r.Name] = string(st)
			states = append(states, st)
		}
		switch {
		case len(states) > 0:
			shown[t.Table] = string(copystate.Least(states...))
		case t.Status == capture.Installed || t.Status == capture.Disabled:
			shown[t.Table] = string(copystate.Replicating)
		default:
			shown[t.Table] = "-"
		}
	}
	return shown, per
}

func seqValue(v *int64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func (a *app) tablesCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tables",
		Short: "List the selected tables: key, trigger, state, pending events",
		Long: `Lists every table of the origin matched by tables.include/exclude with its
primary key, the status of its capture trigger (installed, missing,
no primary key, disabled), its state on the replicas (copying or catchup
while pgreplica sync copies it, then replicating) and the events captured for
it that the slowest replica has not applied yet. Problems are listed first.
Then each replica's rule per table (replicas[].tables), and whether the table
needs a re-copy under it (or the rule is not installed yet).`,
		Example: "  pgreplica -c shop.yaml tables\n  pgreplica -c shop.yaml tables --json | jq '.[] | select(.status != \"installed\")'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if !cfg.MultiMaster() {
				out, err := a.listTables(cmd.Context(), cfg, asJSON)
				if err != nil || !asJSON {
					return err
				}
				return a.printJSON(out)
			}
			// A multi-master set: each node's capture, and its
			// changes' progress on the other nodes.
			all := []tableJSON{}
			for i, d := range cfg.Directions("") {
				if !asJSON {
					if i > 0 {
						fmt.Fprintln(a.stdout)
					}
					fmt.Fprintf(a.stdout, "node %s (its changes on %s):\n", d.Source, strings.Join(replicaNames(d), ", "))
				}
				out, err := a.listTables(cmd.Context(), d, asJSON)
				if err != nil {
					return fmt.Errorf("node %s: %w", d.Source, err)
				}
				for _, t := range out {
					t.Node = d.Source
					all = append(all, t)
				}
			}
			if asJSON {
				return a.printJSON(all)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: an array of {table, key, key_index, status, state, replicas, pending, last_event_at}")
	return cmd
}

// listTables prints the tables of a one-way set (or of one node of a
// multi-master set), or with asJSON returns them.
func (a *app) listTables(ctx context.Context, cfg *config.Config, asJSON bool) ([]tableJSON, error) {
	tables, skipped, err := replay.ListTables(ctx, cfg, "", cfg.Tables.Match)
	if err != nil {
		return nil, err
	}
	for _, r := range skipped {
		fmt.Fprintf(a.stderr, "warning: replica %s could not be read: its pending events are not counted\n", r)
	}
	if typos, err := capture.UnmatchedIncludes(ctx, cfg, "tables"); err == nil {
		for _, s := range typos {
			fmt.Fprintf(a.stderr, "warning: %s\n", s)
		}
	}
	capture.SortByStatus(tables)
	states, perReplica := tableStates(ctx, cfg, tables)
	seqs, _ := capture.ReadSequences(ctx, cfg) // none before install
	fenced := capture.Fenced(ctx, cfg)
	var ruleStates []rule.State
	if rule.Any(cfg) {
		if ruleStates, err = rule.States(ctx, cfg); err != nil {
			fmt.Fprintf(a.stderr, "warning: rules: %v\n", err)
		}
	}
	rules := map[pg.Table][]rule.State{}
	for _, s := range ruleStates {
		rules[s.Table] = append(rules[s.Table], s)
	}
	if asJSON {
		byTable := map[pg.Table][]sequenceJSON{}
		for _, s := range seqs {
			byTable[s.Table] = append(byTable[s.Table], sequenceJSON{Name: s.Name, Origin: s.Origin, Replicas: s.Replicas})
		}
		out := make([]tableJSON, len(tables))
		for i, t := range tables {
			out[i] = tableJSON{Table: t.Table.String(), Key: t.Key, Status: string(t.Status),
				State: states[t.Table], Replicas: perReplica[t.Table], Pending: t.Pending}
			switch {
			case out[i].Key == nil:
				out[i].Key = []string{}
			case t.KeyIsUnique:
				out[i].KeyIndex = "unique"
			default:
				out[i].KeyIndex = "primary"
			}
			if !t.Last.IsZero() {
				s := t.Last.UTC().Format(time.RFC3339)
				out[i].LastEventAt = &s
			}
			out[i].Sequences = byTable[t.Table]
			for _, s := range rules[t.Table] {
				if out[i].Rules == nil {
					out[i].Rules = map[string]ruleJSON{}
				}
				out[i].Rules[s.Replica] = ruleOf(s)
			}
			for _, r := range cfg.Connected() {
				if fenced[r.Name][t.Table] {
					out[i].Fenced = append(out[i].Fenced, r.Name)
				}
			}
		}
		return out, nil
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "STATUS\tTABLE\tKEY\tSTATE\tPENDING\tLAST EVENT")
	for _, t := range tables {
		key, last := "-", "-"
		if len(t.Key) > 0 {
			key = strings.Join(t.Key, ",")
		}
		if t.KeyIsUnique {
			key += " (unique)"
		}
		if !t.Last.IsZero() {
			last = t.Last.Local().Format("2006-01-02 15:04:05")
		}
		state := states[t.Table]
		for _, s := range rules[t.Table] {
			if s.Problem() != "" {
				state = "needs re-copy"
				if s.Hash != s.Installed {
					state = "rule not installed"
				}
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", t.Status, t.Table, key, state, t.Pending, last)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if len(ruleStates) > 0 {
		fmt.Fprintln(a.stdout)
	}
	for _, s := range ruleStates {
		line := "replica " + s.Replica + ": " + s.Table.String() + ": "
		if s.Rule != nil {
			line += s.Rule.Summary()
		} else {
			line += "no rule"
		}
		if p := s.Problem(); p != "" {
			line += " · " + p
		}
		fmt.Fprintln(a.stdout, line)
	}
	for _, r := range cfg.Connected() {
		if n := len(fenced[r.Name]); n > 0 {
			fmt.Fprintf(a.stdout, "\nreplica %s is fenced (protect): writes by anyone but pgreplica are refused on %d %s\n", r.Name, n, plural(n, "table", "tables"))
		}
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	// Sequences travel in the stream: where each stands.
	fmt.Fprintln(a.stdout)
	w = tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	head := "SEQUENCE\tTABLE\tORIGIN"
	for _, r := range cfg.Connected() {
		head += "\t" + strings.ToUpper(r.Name)
	}
	fmt.Fprintln(w, head)
	for _, sq := range seqs {
		line := sq.Name + "\t" + sq.Table.String() + "\t" + seqValue(sq.Origin)
		for _, r := range cfg.Connected() {
			line += "\t" + seqValue(sq.Replicas[r.Name])
		}
		fmt.Fprintln(w, line)
	}
	return nil, w.Flush()
}

func parseTables(args []string) ([]pg.Table, error) {
	out := make([]pg.Table, 0, len(args))
	for _, s := range args {
		t, err := pg.ParseTable(s)
		if err != nil {
			return nil, usagef("%v", err)
		}
		out = append(out, t)
	}
	return out, nil
}

func (a *app) addTableCommand() *cobra.Command {
	var syncAfter, noSync bool
	cmd := &cobra.Command{
		Use:   "add-table TABLE...",
		Short: "Install capture on tables, one at a time",
		Long: `Installs the capture triggers on each named table of the origin, after checking
that every replica has it. Names are schema.table (public when the schema is
left out); quote parts with double quotes as in SQL: '"My Schema"."Orders"'.

With --sync the tables are then copied to every replica online, while the
replication runs, and join it (state copying, then catchup, then
replicating); the other tables keep replicating meanwhile. See pgreplica sync.

A table whose capture was removed (remove-table) is refused: its replicas
missed the changes made since. Copy it again with --sync, or capture it
again as it is with --no-sync when you know the replicas have its rows.`,
		Example: "  pgreplica -c shop.yaml add-table public.invoices sales.refunds\n  pgreplica -c shop.yaml add-table public.invoices --sync --yes\n  pgreplica -c shop.yaml add-table public.sessions --no-sync",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tables, err := parseTables(args)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if syncAfter && noSync {
				return &usageError{"--sync and --no-sync exclude each other"}
			}
			if err := capture.CheckOriginTables(cmd.Context(), cfg, tables, true); err != nil {
				return err
			}
			if syncAfter {
				if err := cfg.RequireReplicas(); err != nil {
					return err
				}
				return a.runSync(cmd, cfg, tablecopy.Options{Tables: tables})
			}
			return capture.AddTablesWith(cmd.Context(), cfg, tables, capture.Options{Recapture: noSync}, a.line)
		},
	}
	cmd.Flags().BoolVar(&syncAfter, "sync", false, "then copy the tables to every replica online (see pgreplica sync)")
	cmd.Flags().BoolVar(&noSync, "no-sync", false, "capture a table whose capture was removed again without copying it")
	a.addYesFlag(cmd)
	return cmd
}

func (a *app) removeTableCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove-table TABLE...",
		Short: "Remove capture from tables, one at a time",
		Long: `Removes the capture triggers from each named table of the origin. Its changes
from then on are not replicated; events already captured are still applied.`,
		Example: "  pgreplica -c shop.yaml remove-table public.sessions --yes",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tables, err := parseTables(args)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := capture.CheckOriginTables(cmd.Context(), cfg, tables, false); err != nil {
				return err
			}
			names := make([]string, len(tables))
			for i, t := range tables {
				names[i] = t.String()
			}
			if err := a.confirm("Stop capturing " + strings.Join(names, ", ") + "?"); err != nil {
				return err
			}
			return capture.RemoveTables(cmd.Context(), cfg, tables, a.line)
		},
	}
	a.addYesFlag(cmd)
	return cmd
}
