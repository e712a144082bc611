package main

import (
	"github.com/spf13/cobra"
)

// extraCommands are the commands of the replay engine, the copy and the TUI.
func (a *app) extraCommands() []*cobra.Command {
	return []*cobra.Command{
		a.runCommand(),
		a.replicateCommand(),
		a.statusCommand(),
		a.purgeCommand(),
		a.tuiCommand(),
		a.serveCommand(),
		a.demoCommand(),
		a.syncCommand(),
		a.verifyCommand(),
		a.checkCommand(),
		a.conflictsCommand(),
		a.backupCommand(),
		a.smokeCommand(),
		a.whyCommand(),
		a.alertsCommand(),
		a.exportCommand(),
		a.importCommand(),
		a.ackCommand(),
		a.executeCommand(),
		a.skipCommand(),
		a.reapplyCommand(),
		a.retryCommand(),
		a.switchoverCommand(),
		a.failoverCommand(),
	}
}

func (a *app) runTUI(cmd *cobra.Command) error {
	return a.openTUI(cmd.Context(), tuiOptions{color: "auto"})
}
