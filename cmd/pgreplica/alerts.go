package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"pgreplica/core/alert"
)

func (a *app) alertsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Alert channels (e-mail, webhooks)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "test",
		Short: "Send one test message to every alert channel",
		Long: `Sends one test message to every channel configured under alerts: (e-mail and
each webhook) and reports, per channel, whether it was delivered. Exit 1 when
a channel failed, 2 when none is configured.`,
		Example: "  pgreplica -c /etc/pgreplica/shop.yaml alerts test",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if !cfg.Alerts.Enabled() {
				where := cfg.Path
				if where == "" {
					where = "a config file (-c FILE)"
				}
				return usagef("no alert channel configured: add alerts.email or alerts.webhooks to %s", where)
			}
			chans, err := alert.Channels(cfg.Alerts, os.Getenv("PGREPLICA_SMTP_PASSWORD"))
			if err != nil {
				return err
			}
			failed := 0
			for i, err := range alert.SendTest(cmd.Context(), cfg.Name, chans) {
				if err != nil {
					failed++
					fmt.Fprintf(a.stdout, "✘ %s: %v\n", chans[i].Name(), err)
					continue
				}
				fmt.Fprintf(a.stdout, "✔ %s: test message sent\n", chans[i].Name())
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d alert channels failed", failed, len(chans))
			}
			return nil
		},
	})
	return cmd
}
