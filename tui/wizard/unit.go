package wizard

import "fmt"

// Unit is a systemd unit running the daemon for the config at configPath
// with the binary at binary.
func Unit(binary, configPath string) string {
	return fmt.Sprintf(`[Unit]
Description=pgreplica trigger-based PostgreSQL replication
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
Type=simple
ExecStart=%s --config %s run --daemon
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure
RestartSec=5s
RuntimeDirectory=pgreplica
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
`, binary, configPath)
}
