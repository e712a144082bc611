package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"pgreplica/core/switchover"
)

func (a *app) failoverCommand() *cobra.Command {
	var opt switchover.Options
	var reportLost, asJSON bool
	var from string
	cmd := &cobra.Command{
		Use:   "failover --to REPLICA",
		Short: "Make a replica the origin when the origin is lost",
		Long: `The origin is lost: replica REPLICA becomes the origin without it.

  1 record    how far REPLICA had applied the old origin's log is kept on it
  2 promote   capture is installed on REPLICA; its sequences are set never
              below max() of the columns that use them
  3 repoint   every other replica starts from REPLICA's snapshot and is made
              equal to it by verify --repair on the difference (no full copy):
              rows it had and REPLICA had not are removed, and the reverse
  4 unfence   REPLICA takes the writes (its protect fence is lifted)
  5 config    the config file names REPLICA as the origin, without the old
              origin (the old file is kept as FILE.bak-TIME)

What REPLICA had not applied of the old origin's log is lost to the set.
Choose the replica that is furthest ahead (pgreplica status). Once the old
origin can be read again, --report-lost --from DSN lists exactly those events
(id, transaction, table, operation, key, values), to be re-entered by hand
where they matter. Do not let applications write to the old origin again.

It refuses an origin that still answers (use switchover, which loses
nothing), a replica that cannot be read, and a running daemon (stop it first;
start it again with the rewritten config). It asks first: type the replica's
name (--yes for scripts). Running it again after an interruption finishes it.`,
		Example: `  pgreplica -c shop.yaml failover --to reporting
  pgreplica -c shop.yaml failover --report-lost --json \
      --from "host=db1 dbname=shop user=replicator"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reportLost == (opt.To != "") {
				return usagef("failover needs exactly one of --to REPLICA and --report-lost --from DSN")
			}
			if reportLost {
				if from == "" {
					return usagef("--report-lost needs --from DSN (the old origin)")
				}
				dsn, err := a.flagDSN("--from", from)
				if err != nil {
					return err
				}
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				rep, err := switchover.ReportLost(cmd.Context(), cfg, dsn)
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(rep)
				}
				a.line(fmt.Sprintf("set %s: %d events of the old origin %s were not applied by the new origin %s (failed over at %s, from position %s)",
					rep.Set, len(rep.Events), rep.OldOrigin, rep.NewOrigin, rep.FailedAt, rep.Position))
				for _, e := range rep.Events {
					what := e.Table
					if what == "" {
						what = map[string]string{"Q": "sequences", "E": "script"}[e.Op]
					}
					a.line(fmt.Sprintf("  event %d txid %s %s %s %s key %s data %s", e.ID, e.TxID, e.At.UTC().Format("2006-01-02 15:04:05.000"), e.Op, what, e.Key, e.Data))
				}
				return nil
			}
			path, err := a.configFile()
			if err != nil {
				return err
			}
			opt.Environ = os.Environ()
			opt.Report = a.line
			if err := testDieHook(&opt); err != nil {
				return err
			}
			f, err := switchover.PrepareFailover(cmd.Context(), path, opt)
			if err != nil {
				return err
			}
			for _, l := range f.Lines() {
				a.line(l)
			}
			if err := a.confirmTyped(fmt.Sprintf("The origin is lost. Type %s to make it the origin: ", opt.To), opt.To); err != nil {
				return err
			}
			res, err := f.Run(cmd.Context())
			if err != nil {
				return err
			}
			if !res.Equal {
				return &codeError{code: exitProblems, err: errors.New("failed over, but verify found differences: pgreplica verify --repair")}
			}
			a.line("failed over: every replica equals the new origin; start the daemon with the rewritten config")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.To, "to", "", "the replica that becomes the origin")
	f.BoolVar(&reportLost, "report-lost", false, "list the old origin's events the new origin had not applied (with --from)")
	f.StringVar(&from, "from", "", "the old origin's DSN, for --report-lost; env:VAR or @FILE read it from there")
	f.BoolVar(&asJSON, "json", false, "--report-lost as JSON")
	a.addYesFlag(cmd)
	return cmd
}
