// Package sql holds the SQL that pgreplica installs, embedded in the binary.
// The same files can be run by hand with psql -f.
package sql

import _ "embed"

// Origin is the capture schema for the origin database (sql/origin.sql).
//
//go:embed origin.sql
var Origin string

// Replica is the bookkeeping schema for a replica database (sql/replica.sql).
//
//go:embed replica.sql
var Replica string

// Versions of the schemas above; the install is skipped when the database
// already has this version (pgreplica.meta).
const (
	OriginVersion  = "3"
	ReplicaVersion = "3"
)

// BundleOrigin is the origin's record of the bundles exported for file
// replicas (sql/bundle_origin.sql), created by the first export.
//
//go:embed bundle_origin.sql
var BundleOrigin string

// BundleReplica is a file replica's record of the bundles it applied
// (sql/bundle_replica.sql), created by the first import.
//
//go:embed bundle_replica.sql
var BundleReplica string
