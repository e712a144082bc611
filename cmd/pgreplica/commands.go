package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// extraCommands are the commands of the replay engine, the copy and the TUI.
func (a *app) extraCommands() []*cobra.Command {
	return []*cobra.Command{
		a.runCommand(),
		a.replicateCommand(),
		a.statusCommand(),
		a.purgeCommand(),
	}
}

func (a *app) runTUI(cmd *cobra.Command) error {
	return errors.New("the TUI is not built yet; run pgreplica --help for the commands")
}
