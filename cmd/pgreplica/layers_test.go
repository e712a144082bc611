package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The shipped binary links no test kit, and no TUI package talks to
// PostgreSQL itself (core does).
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "testing" || p == "pgreplica/core/pgtest" || p == "pgreplica/core/alert/alerttest" {
			t.Errorf("the pgreplica binary links %s", p)
		}
	}
	out, err = exec.Command("go", "list", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "pgreplica/tui/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list tui: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "github.com/jackc/") {
			t.Errorf("a TUI package imports a PostgreSQL driver: %s", line)
		}
	}
}
