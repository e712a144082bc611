// Package pgtest is what tests share to run against real PostgreSQL: one
// pair of throwaway clusters per test binary (Shared, Main), fresh
// databases per test (Pair.DBs) and an independent row comparison
// (TableRows). The clusters themselves are core/pgcluster's, which the
// shipped binary may use; this package imports testing and is for tests
// only.
package pgtest

import "pgreplica/core/pgcluster"

// The cluster starter, under the names the tests know.
type (
	Cluster = pgcluster.Cluster
	Options = pgcluster.Options
)

// PasswordUser is a role that must log in with PasswordUserPassword over
// TCP, for tests of authentication errors.
const (
	PasswordUser         = pgcluster.PasswordUser
	PasswordUserPassword = pgcluster.PasswordUserPassword
)

// ErrNoServer is returned when no PostgreSQL server binaries are found.
var ErrNoServer = pgcluster.ErrNoServer

// Start, External, BinDir and FreePort are pgcluster's.
var (
	Start    = pgcluster.Start
	External = pgcluster.External
	BinDir   = pgcluster.BinDir
	FreePort = pgcluster.FreePort
)
