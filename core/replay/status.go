package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/copystate"
	"pgreplica/core/pg"
)

// Report is where replication stands, read from the databases (it does
// not need a running engine): what `pgreplica status` prints.
type Report struct {
	Set           string
	Origin        string // user@host:port/db, no password
	DaemonRunning bool   // a pgreplica engine holds a LISTEN session on the origin
	LogEvents     int64  // events in the origin's log (applied or not)
	Replicas      []ReplicaReport
	TakenAt       time.Time
}

// ReplicaReport is one replica in a Report.
type ReplicaReport struct {
	Name          string
	Target        string // user@host:port/db
	Reachable     bool
	Error         string // why the replica could not be read, or what stopped it
	Position      Position
	Pending       int64         // events captured and not yet applied here
	Lag           time.Duration // age of the oldest event not applied here; 0 when none
	LastAppliedAt time.Time
	Conflicts     int64                      // rows in pgreplica.conflict on the replica
	TableStates   map[string]copystate.State // table -> copying/catchup, for tables being synced
}

// ErrNotInstalled is QueryStatus's error when the origin has no capture
// schema.
var ErrNotInstalled = errors.New("pgreplica is not installed on the origin; run pgreplica install")

// QueryStatus reads the state of every replica of the set. An unreachable
// replica is reported, not an error; an unreachable origin is an error.
func QueryStatus(ctx context.Context, cfg *config.Config) (Report, error) {
	rep := Report{Set: cfg.Name, Origin: config.Describe(cfg.Origin.DSN), TakenAt: time.Now()}
	origin, err := pg.ConnectOrigin(ctx, cfg, "status")
	if err != nil {
		return rep, err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	err = origin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
	                                            WHERE datname = current_database() AND application_name = $1),
	                                   (SELECT count(*) FROM pgreplica.log)`,
		"pgreplica listen "+cfg.Name).Scan(&rep.DaemonRunning, &rep.LogEvents)
	if err != nil {
		if isUndefinedTable(err) {
			return rep, ErrNotInstalled
		}
		return rep, fmt.Errorf("origin: %w", err)
	}
	for _, r := range cfg.Replicas {
		rep.Replicas = append(rep.Replicas, replicaReport(ctx, origin, cfg.Name, r))
	}
	return rep, nil
}

func replicaReport(ctx context.Context, origin *pgx.Conn, set string, r config.Replica) ReplicaReport {
	rr := ReplicaReport{Name: r.Name, Target: config.Describe(r.DSN)}
	conn, err := pg.ConnectReplica(ctx, r, "status")
	if err != nil {
		rr.Error = err.Error()
		return rr
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rr.Reachable = true
	pos, err := ReadPosition(ctx, conn, set)
	if err != nil {
		rr.Error = fmt.Sprintf("replica %s: %v", r.Name, err)
		return rr
	}
	rr.Position, rr.LastAppliedAt = pos, pos.AppliedAt
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pgreplica.conflict WHERE set_name = $1`, set).Scan(&rr.Conflicts); err != nil {
		rr.Error = fmt.Sprintf("replica %s: count conflicts: %v", r.Name, err)
		return rr
	}
	if states, err := copystate.Read(ctx, conn, set); err == nil {
		for t, st := range copystate.Syncing(states) {
			if rr.TableStates == nil {
				rr.TableStates = map[string]copystate.State{}
			}
			rr.TableStates[t.String()] = st
		}
	}
	// Pending: events not visible in the position's snapshot, minus those of
	// a half-applied interval already applied (id <= last_id).
	var oldest *time.Time
	err = origin.QueryRow(ctx, `
SELECT count(*), min(at) FROM pgreplica.log
 WHERE `+pendingWhere,
		pos.Snapshot.String(), nullable(pos.Target), pos.LastID).Scan(&rr.Pending, &oldest)
	if err != nil {
		rr.Error = fmt.Sprintf("origin: count pending events for %s: %v", r.Name, err)
		return rr
	}
	if oldest != nil {
		rr.Lag = time.Since(*oldest)
	}
	return rr
}
