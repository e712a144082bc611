package wizard

import "pgreplica/scripts"

// Unit is the systemd unit shipped as scripts/pgreplica.service, running
// the daemon for the config at configPath with the binary at binary.
func Unit(binary, configPath string) string { return scripts.Unit(binary, configPath) }
