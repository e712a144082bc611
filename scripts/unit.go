// Package scripts ships the systemd unit of the pgreplica daemon
// (pgreplica.service, next to this file), embedded so that the install
// wizard writes the same hardened unit that is documented here.
package scripts

import (
	_ "embed"
	"strings"
)

//go:embed pgreplica.service
var unit string

// Unit is pgreplica.service with its ExecStart running binary with the
// config at configPath.
func Unit(binary, configPath string) string {
	lines := strings.Split(unit, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "ExecStart=") {
			lines[i] = "ExecStart=" + binary + " --config " + configPath + " run --daemon"
		}
	}
	return strings.Join(lines, "\n")
}

//go:embed pgreplica@.service
var templateUnit string

// TemplateUnit is pgreplica@.service, the unit of one engine per set:
// pgreplica@NAME runs /etc/pgreplica/NAME.yaml.
func TemplateUnit() string { return templateUnit }
