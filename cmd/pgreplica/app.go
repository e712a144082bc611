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
	warned     bool // the password-in-argv warning was printed
}

const version = "0.1.0"

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgreplica",
		Short: "Trigger-based asynchronous replication for PostgreSQL",
		Long: `pgreplica captures row changes on an origin database with triggers and replays
them on one or more replicas, exactly once and in commit order. It works
where native logical replication can't: managed databases, no superuser,
mixed major versions, per-table or filtered copies, lazy multi-master,
replicas fed by files, and a planned switchover with nothing lost.

With no arguments in a terminal it opens the operator's TUI; every action of
the TUI is also a subcommand below.

Configuration comes from -c FILE, else ./pgreplica.yaml, else the one file
in /etc/pgreplica/*.yaml (with several there, one per set, pass -c); or,
without a file, from --origin and --replica.`,
		Example: `  pgreplica demo                         # see it work on two throwaway clusters
  pgreplica -c shop.yaml install         # capture and bookkeeping
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
	// Flag help wraps at 80 columns, for an operator's ssh session.
	root.SetUsageTemplate(strings.ReplaceAll(root.UsageTemplate(), "FlagUsages", "FlagUsagesWrapped 80"))
	pf := root.PersistentFlags()
	pf.StringVarP(&a.configPath, "config", "c", "", "config file (default ./pgreplica.yaml, then /etc/pgreplica/*.yaml)")
	pf.StringVar(&a.originDSN, "origin", "", "origin DSN, for use without a config file; env:VAR or @FILE read it from there (default $"+config.EnvOrigin+")")
	pf.StringArrayVar(&a.replicaDSN, "replica", nil, "replica DSN, for use without a config file (repeatable); env:VAR or @FILE as for --origin")
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
// the --origin/--replica flags, with the DSNs of the environment
// (PGREPLICA_ORIGIN, PGREPLICA_REPLICA_<NAME>) over a config file's, or in
// place of the flags.
func (a *app) loadConfig() (*config.Config, error) {
	environ := os.Environ()
	if a.originDSN != "" || len(a.replicaDSN) > 0 {
		if a.configPath != "" {
			return nil, usagef("use either -c FILE or --origin/--replica, not both")
		}
		origin, err := a.flagDSN("--origin", a.originDSN)
		if err != nil {
			return nil, err
		}
		if origin == "" {
			origin = os.Getenv(config.EnvOrigin)
		}
		if origin == "" {
			return nil, usagef("--replica needs --origin (or %s)", config.EnvOrigin)
		}
		var replicas []string
		for _, v := range a.replicaDSN {
			dsn, err := a.flagDSN("--replica", v)
			if err != nil {
				return nil, err
			}
			replicas = append(replicas, dsn)
		}
		return fromFlags(a.setName, origin, replicas, environ)
	}
	path, err := config.Find(a.configPath)
	if err != nil {
		return nil, err
	}
	if path == "" {
		if origin := os.Getenv(config.EnvOrigin); origin != "" {
			return fromFlags(a.setName, origin, nil, environ)
		}
		return nil, withHint(errors.New("no configuration: no ./pgreplica.yaml and none in /etc/pgreplica"),
			"pgreplica -c FILE ..., or pgreplica --origin DSN --replica DSN ... (or "+config.EnvOrigin+" and "+config.EnvReplicaPrefix+"<NAME>); see configs/example.yaml")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.ApplyEnv(environ); err != nil {
		return nil, err
	}
	return cfg, nil
}

// fromFlags is the config of the flags and the environment's replicas.
func fromFlags(name, origin string, replicas, environ []string) (*config.Config, error) {
	cfg, err := config.FromFlags(name, origin, replicas)
	if err != nil {
		return nil, err
	}
	cfg.Replicas = append(cfg.Replicas, config.EnvReplicas(environ)...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// flagDSN resolves a DSN flag's value (env:VAR, @FILE or the DSN) and warns
// once about a password given on the command line.
func (a *app) flagDSN(flag, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	dsn, literal, err := config.FlagDSN(flag, value)
	if err != nil {
		return "", &usageError{err.Error()}
	}
	if literal && !a.warned {
		a.warned = true
		fmt.Fprintf(a.stderr, "warning: %s has a password on the command line, where every local user can read it (ps, /proc/PID/cmdline); use ~/.pgpass, PGPASSWORD, %s env:VAR or %s @FILE\n", flag, flag, flag)
	}
	return dsn, nil
}

// loadConfigWithReplicas is loadConfig for commands that need replicas.
// configFile is the config file in use, "" when the set comes from
// --origin/--replica or there is none (for the commands that rewrite it or
// keep state next to it: switchover, failover).
func (a *app) configFile() (string, error) {
	if a.originDSN != "" || len(a.replicaDSN) > 0 {
		return "", nil
	}
	return config.Find(a.configPath)
}

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
