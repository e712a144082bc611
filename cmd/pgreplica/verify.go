package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/pg"
	"pgreplica/core/verify"
)

// verifyJSON is the stable shape of `verify --json`.
type verifyJSON struct {
	Replicas []verifyReplicaJSON `json:"replicas"`
	Equal    bool                `json:"equal"`
}

type verifyReplicaJSON struct {
	Name        string            `json:"name"`
	At          string            `json:"at"` // the origin snapshot both sides were compared at
	Equal       bool              `json:"equal"`
	TookSeconds float64           `json:"took_seconds"`
	Tables      []verifyTableJSON `json:"tables"`
}

type verifyTableJSON struct {
	Table          string            `json:"table"`
	Equal          bool              `json:"equal"`
	OriginRows     int64             `json:"origin_rows"`
	ReplicaRows    int64             `json:"replica_rows"`
	Missing        []json.RawMessage `json:"missing"`
	Extra          []json.RawMessage `json:"extra"`
	Different      []json.RawMessage `json:"different"`
	MissingCount   int64             `json:"missing_count"`
	ExtraCount     int64             `json:"extra_count"`
	DifferentCount int64             `json:"different_count"`
	Truncated      bool              `json:"truncated"`
	Skipped        string            `json:"skipped,omitempty"`
	Repaired       *repairedJSON     `json:"repaired,omitempty"`
	TookSeconds    float64           `json:"took_seconds"`
}

type repairedJSON struct {
	Deleted  int64 `json:"deleted"`
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated"`
}

func keysJSON(ks []verify.Key) []json.RawMessage {
	out := make([]json.RawMessage, len(ks))
	for i, k := range ks {
		out[i] = json.RawMessage(k.JSON)
	}
	return out
}

func verifySeconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func (a *app) verifyCommand() *cobra.Command {
	var replicas, tables []string
	var asJSON, repair bool
	var maxKeys int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare replicas with the origin at one point; --repair fixes",
		Long: `Compares each replica with the origin, table by table, at one consistent point
while writes go on: the replica's position is locked (a running engine waits),
an origin snapshot is taken, and the replica applies exactly the changes up to
that snapshot in the same transaction in which it is compared. So both sides
show the same moment of the origin's history and every difference is real.

Each server computes a row count and a hash of its rows, for the whole table
and then only for the primary-key ranges that differ, narrowing down until
the differing rows are found: a large table is compared without pulling its
rows through the network. Lists the keys of the rows missing on the replica,
extra there, and different (at most --max-keys per table).

--repair makes the replica equal: in the same transaction it deletes the extra
rows, inserts the missing ones and updates the different ones with the
origin's values, and reports what it changed (asks first unless --yes). A
table with more differences than --max-keys is better copied again:
pgreplica sync --table T.

Exit status: 0 when every table is equal (or was repaired), 3 when
differences were found, 1 when the comparison could not be made.`,
		Example: `  pgreplica -c shop.yaml verify
  pgreplica -c shop.yaml verify --replica reporting --table public.orders --json
  pgreplica -c shop.yaml verify --repair --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := a.replicaSelection(replicas)
			if err != nil {
				return err
			}
			var names []pg.Table
			if len(tables) > 0 {
				if names, err = parseTables(tables); err != nil {
					return err
				}
			}
			if maxKeys <= 0 {
				return usagef("--max-keys must be positive (got %d)", maxKeys)
			}
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			opt := verify.Options{Replica: name, Tables: names, MaxKeys: maxKeys}
			if !asJSON {
				opt.OnTable = a.printTableResult
			}
			// With --repair and without --yes, show the differences first and
			// ask; the repair then compares again and fixes what it finds
			// then (the engine may have moved on meanwhile).
			opt.Repair = repair && a.yes
			res, err := verify.Run(cmd.Context(), cfg, opt)
			if err != nil {
				return err
			}
			if repair && !a.yes && !res.Equal {
				if !asJSON {
					a.printSummary(res)
				}
				if err := a.confirm(fmt.Sprintf("Repair %s?", differenceText(res))); err != nil {
					return err
				}
				opt.Repair = true
				if !asJSON {
					a.line("")
				}
				if res, err = verify.Run(cmd.Context(), cfg, opt); err != nil {
					return err
				}
			}
			if asJSON {
				if err := a.printJSON(toVerifyJSON(res)); err != nil {
					return err
				}
			} else {
				a.printSummary(res)
			}
			switch {
			case res.Equal:
				return nil
			case opt.Repair && res.Resolved():
				return nil
			case opt.Repair:
				return &codeError{code: exitProblems, err: errors.New("verify found differences it did not repair")}
			case onlySkipped(res):
				return &codeError{code: exitProblems, err: errors.New("verify could not compare every table: some are being copied")}
			}
			return &codeError{code: exitProblems, err: errors.New("verify found differences")}
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&replicas, "replica", nil, "compare replica `NAME` only (default: every replica)")
	f.StringArrayVar(&tables, "table", nil, "compare `TABLE` only (schema.table; repeatable; default: every captured table)")
	f.BoolVar(&asJSON, "json", false, `print JSON: {replicas: [{name, at, equal, tables: [{table, equal, origin_rows, replica_rows, missing, extra, different, ...}]}], equal}`)
	f.BoolVar(&repair, "repair", false, "make the replica's differing rows equal to the origin's")
	f.IntVar(&maxKeys, "max-keys", 1000, "list (and repair) at most this many differing rows per table")
	a.addYesFlag(cmd)
	return cmd
}

func toVerifyJSON(res verify.Result) verifyJSON {
	out := verifyJSON{Equal: res.Equal, Replicas: []verifyReplicaJSON{}}
	for _, rr := range res.Replicas {
		jr := verifyReplicaJSON{Name: rr.Name, At: rr.At.String(), Equal: rr.Equal, TookSeconds: verifySeconds(rr.Took),
			Tables: []verifyTableJSON{}}
		for _, t := range rr.Tables {
			jt := verifyTableJSON{Table: t.Table.String(), Equal: t.Equal, OriginRows: t.OriginRows, ReplicaRows: t.ReplicaRows,
				Missing: keysJSON(t.Missing), Extra: keysJSON(t.Extra), Different: keysJSON(t.Different),
				MissingCount: t.MissingCount, ExtraCount: t.ExtraCount, DifferentCount: t.DifferentCount,
				Truncated: t.Truncated, Skipped: t.Skipped, TookSeconds: verifySeconds(t.Took)}
			if t.Repaired != nil {
				jt.Repaired = &repairedJSON{Deleted: t.Repaired.Deleted, Inserted: t.Repaired.Inserted, Updated: t.Repaired.Updated}
			}
			jr.Tables = append(jr.Tables, jt)
		}
		out.Replicas = append(out.Replicas, jr)
	}
	return out
}

// printTableResult prints one table's outcome as soon as it is known.
func (a *app) printTableResult(replica string, t verify.TableResult) {
	took := t.Took.Round(time.Millisecond)
	switch {
	case t.Skipped != "":
		a.line(fmt.Sprintf("%s %s: not compared: %s", replica, t.Table, t.Skipped))
		return
	case t.Equal:
		a.line(fmt.Sprintf("%s %s: equal (%d rows, %s)", replica, t.Table, t.OriginRows, took))
		return
	}
	a.line(fmt.Sprintf("%s %s: DIFFERENT: %s (origin %d rows, replica %d, %s)", replica, t.Table,
		countsText(t), t.OriginRows, t.ReplicaRows, took))
	for _, l := range []struct {
		what string
		keys []verify.Key
	}{{"missing", t.Missing}, {"extra", t.Extra}, {"different", t.Different}} {
		for _, k := range l.keys {
			a.line(fmt.Sprintf("    %-9s %s", l.what, k))
		}
	}
	if t.Truncated {
		a.line(fmt.Sprintf("    ... more not listed (--max-keys); to repair so many, copy the table again: pgreplica sync --table %s", t.Table))
	}
	if t.Repaired != nil {
		a.line(fmt.Sprintf("    repaired: deleted %d, inserted %d, updated %d", t.Repaired.Deleted, t.Repaired.Inserted, t.Repaired.Updated))
	}
}

func countsText(t verify.TableResult) string {
	var parts []string
	more := ""
	if t.Truncated {
		more = "≥"
	}
	if t.MissingCount > 0 {
		parts = append(parts, fmt.Sprintf("%s%d missing", more, t.MissingCount))
	}
	if t.ExtraCount > 0 {
		parts = append(parts, fmt.Sprintf("%s%d extra", more, t.ExtraCount))
	}
	if t.DifferentCount > 0 {
		parts = append(parts, fmt.Sprintf("%d different", t.DifferentCount))
	}
	if len(parts) == 0 {
		return "more rows differ than were listed"
	}
	return strings.Join(parts, ", ")
}

func (a *app) printSummary(res verify.Result) {
	for _, rr := range res.Replicas {
		var equal, differ, skipped int
		for _, t := range rr.Tables {
			switch {
			case t.Skipped != "":
				skipped++
			case t.Equal:
				equal++
			default:
				differ++
			}
		}
		s := fmt.Sprintf("replica %s: %d equal, %d different", rr.Name, equal, differ)
		if skipped > 0 {
			s += fmt.Sprintf(", %d not compared", skipped)
		}
		a.line(s + fmt.Sprintf(" (compared at origin snapshot %s in %s)", rr.At, rr.Took.Round(time.Millisecond)))
	}
}

// onlySkipped reports whether every table that is not equal was skipped.
func onlySkipped(res verify.Result) bool {
	for _, rr := range res.Replicas {
		for _, t := range rr.Tables {
			if !t.Equal && t.Skipped == "" {
				return false
			}
		}
	}
	return true
}

// differenceText says what a repair would touch.
func differenceText(res verify.Result) string {
	var parts []string
	for _, rr := range res.Replicas {
		var rows int64
		for _, t := range rr.Tables {
			rows += t.MissingCount + t.ExtraCount + t.DifferentCount
		}
		if rows > 0 {
			parts = append(parts, fmt.Sprintf("%d row(s) on replica %s", rows, rr.Name))
		}
	}
	if len(parts) == 0 {
		return "the differences"
	}
	return strings.Join(parts, " and ")
}
