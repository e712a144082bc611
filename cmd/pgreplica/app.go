package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"pgreplica/core/config"
)

// app holds what every command shares: the streams and the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	configPath string
	originDSN  string
	replicaDSN []string
	setName    string
	yes        bool
}

const version = "0.1.0"

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgreplica",
		Short: "Trigger-based asynchronous replication for PostgreSQL",
		Long: `pgreplica captures row changes on an origin database with triggers and replays
them on one or more replicas, exactly once and in commit order. It works
where native logical replication can't: managed databases, no superuser,
mixed major versions, per-table copies.

With no arguments in a terminal it opens the operator's TUI; every action of
the TUI is also a subcommand below.

Configuration comes from -c FILE, else ./pgreplica.yaml, else the one file
in /etc/pgreplica/*.yaml (with several there, one per set, pass -c); or,
without a file, from --origin and --replica.`,
		Example: `  pgreplica demo                         # see it work on two throwaway clusters
  pgreplica -c shop.yaml install         # install capture on the origin, bookkeeping on replicas
  pgreplica --origin "dbname=shop" --replica "host=db2 dbname=shop" tables
  pgreplica -c shop.yaml run --daemon    # the replay engine, for systemd`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if isTerminal(a.stdout) && isTerminal(a.stdin) {
				return a.runTUI(cmd)
			}
			return cmd.Help()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVarP(&a.configPath, "config", "c", "", "config file (default ./pgreplica.yaml, then /etc/pgreplica/*.yaml)")
	pf.StringVar(&a.originDSN, "origin", "", "origin DSN, for use without a config file")
	pf.StringArrayVar(&a.replicaDSN, "replica", nil, "replica DSN, for use without a config file (repeatable)")
	pf.StringVar(&a.setName, "name", "", "replication set name with --origin (default \"default\")")
	root.AddCommand(
		a.installCommand(),
		a.uninstallCommand(),
		a.tablesCommand(),
		a.addTableCommand(),
		a.removeTableCommand(),
	)
	for _, c := range a.extraCommands() {
		root.AddCommand(c)
	}
	return root
}

// loadConfig resolves the configuration from -c, the default locations or
// the --origin/--replica flags.
func (a *app) loadConfig() (*config.Config, error) {
	if a.originDSN != "" || len(a.replicaDSN) > 0 {
		if a.configPath != "" {
			return nil, usagef("use either -c FILE or --origin/--replica, not both")
		}
		if a.originDSN == "" {
			return nil, usagef("--replica needs --origin")
		}
		return config.FromFlags(a.setName, a.originDSN, a.replicaDSN)
	}
	path, err := config.Find(a.configPath)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, withHint(errors.New("no configuration: no ./pgreplica.yaml and none in /etc/pgreplica"),
			"pgreplica -c FILE ..., or pgreplica --origin DSN --replica DSN ...; see configs/example.yaml")
	}
	return config.Load(path)
}

// loadConfigWithReplicas is loadConfig for commands that need replicas.
func (a *app) loadConfigWithReplicas() (*config.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	if err := cfg.RequireReplicas(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// confirm asks a yes/no question on the terminal; --yes answers yes. Without
// a terminal and without --yes it refuses.
func (a *app) confirm(question string) error {
	if a.yes {
		return nil
	}
	if !isTerminal(a.stdin) {
		return usagef("%s: refusing without --yes (standard input is not a terminal)", strings.TrimSuffix(question, "?"))
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if s := strings.ToLower(strings.TrimSpace(line)); s == "y" || s == "yes" {
		return nil
	}
	return &codeError{code: exitErr, err: errors.New("cancelled")}
}

func (a *app) addYesFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&a.yes, "yes", "y", false, "do not ask for confirmation")
}

// printJSON writes v as indented JSON to stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// line prints one line to stdout.
func (a *app) line(s string) { fmt.Fprintln(a.stdout, s) }

// logger is the text logger for foreground commands (to stderr).
func (a *app) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func isFlagError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "accepts ") ||
		strings.HasPrefix(msg, "requires at least")
}

func commandPath(root *cobra.Command, args []string) string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return root.Name()
	}
	return c.CommandPath()
}
