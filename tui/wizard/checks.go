package wizard

import (
	"context"
	"strings"

	"pgreplica/core/config"
	"pgreplica/core/preflight"
)

// CheckReport is the result of the connect step's checks: core's preflight
// report (`pgreplica check` prints the same).
type CheckReport = preflight.Report

// Check connects to the origin and every replica and checks versions and
// privileges, the pg_dump client and the tables. It changes nothing.
func Check(ctx context.Context, cfg *config.Config) CheckReport { return preflight.Run(ctx, cfg) }

// columns are the check table's node columns: ORIGIN, then each replica's
// name.
func columns(r *CheckReport) []string {
	out := make([]string, len(r.Nodes))
	for i, n := range r.Nodes {
		out[i] = strings.ToUpper(strings.TrimPrefix(n, "replica "))
	}
	return out
}
