package pg

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
)

// ReplicaRole is how errors name a replica: "replica NAME".
func ReplicaRole(name string) string { return "replica " + name }

// AppName is the application_name of a session for purpose ("status",
// "sync shop", ...): "pgreplica " + purpose, or "pgreplica" alone.
func AppName(purpose string) string {
	if purpose == "" {
		return "pgreplica"
	}
	return "pgreplica " + purpose
}

// ConnectOrigin connects to the set's origin for purpose (see AppName).
func ConnectOrigin(ctx context.Context, cfg *config.Config, purpose string) (*pgx.Conn, error) {
	if cfg.MultiMaster() {
		return nil, errors.New("a multi-master set (nodes:) has no one origin: this command works on one-way sets only; install, run, replicate, status, tables, verify and conflicts take nodes")
	}
	return ConnectNet(ctx, "origin", cfg.Origin.DSN, AppName(purpose), NetOf(cfg))
}

// ConnectReplica connects to replica r for purpose (see AppName).
func ConnectReplica(ctx context.Context, r config.Replica, purpose string) (*pgx.Conn, error) {
	return ConnectAs(ctx, ReplicaRole(r.Name), r.DSN, AppName(purpose))
}
