package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	Origin        string   // user@host:port/db, no password
	DaemonRunning bool     // a pgreplica engine holds a LISTEN session on the origin
	LogEvents     int64    // events in the origin's log (applied or not)
	Stale         []string // captured tables whose capture is stale (QueryStatusStale only)
	Replicas      []ReplicaReport
	TakenAt       time.Time
}

// ReplicaReport is one replica in a Report.
type ReplicaReport struct {
	Name           string
	Target         string // user@host:port/db
	Reachable      bool
	Error          string // why the replica could not be read, or what stopped it
	Position       Position
	Pending        int64         // events captured and not yet applied here
	PendingUnknown bool          // Pending could not be counted (the position could not be read)
	Lag            time.Duration // age of the oldest event not applied here; 0 when none
	LastAppliedAt  time.Time
	Conflicts      int64                      // rows in pgreplica.conflict on the replica
	TableStates    map[string]copystate.State // table -> copying/catchup, for tables being synced
	File           *FileReport                // for a file replica: its bundles; nil for the others
}

// ErrNotInstalled is QueryStatus's error when the origin has no capture
// schema.
var ErrNotInstalled = errors.New("pgreplica is not installed on the origin; run pgreplica install")

// QueryStatus reads the state of every replica of the set. An unreachable
// replica is reported, not an error; an unreachable origin is an error.
// Every server gets at most the connect timeout plus timeouts.dead_path
// (its reads also have that statement_timeout), so a dead path makes status
// slow, never hung.
func QueryStatus(ctx context.Context, cfg *config.Config) (Report, error) {
	return queryStatus(ctx, cfg, false)
}

// QueryStatusStale is QueryStatus that also lists the captured tables
// whose capture is stale (Report.Stale), which costs a little per table:
// for pgreplica status, not for a screen refreshed every second.
func QueryStatusStale(ctx context.Context, cfg *config.Config) (Report, error) {
	return queryStatus(ctx, cfg, true)
}

func queryStatus(ctx context.Context, cfg *config.Config, stale bool) (Report, error) {
	if cfg.MultiMaster() {
		return queryNodes(ctx, cfg, stale), nil
	}
	rep := Report{Set: cfg.Name, Origin: config.Describe(cfg.Origin.DSN), TakenAt: time.Now()}
	n := netOf(cfg)
	octx, cancel := context.WithTimeout(ctx, n.ConnectTimeout+n.DeadPath)
	defer cancel()
	origin, err := connectReader(octx, "origin", cfg.Origin.DSN, n)
	if err != nil {
		return rep, deadPath(ctx, octx, err, "origin", n.ConnectTimeout+n.DeadPath)
	}
	defer closeSoon(origin)
	err = origin.QueryRow(octx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
	                                            WHERE datname = current_database() AND application_name = $1),
	                                   (SELECT count(*) FROM pgreplica.log)`,
		"pgreplica listen "+cfg.Name).Scan(&rep.DaemonRunning, &rep.LogEvents)
	if err != nil {
		if isUndefinedTable(err) {
			return rep, ErrNotInstalled
		}
		return rep, fmt.Errorf("origin: %w", deadPath(ctx, octx, err, "origin", n.ConnectTimeout+n.DeadPath))
	}
	if stale {
		if rep.Stale, err = StaleTables(octx, origin); err != nil {
			return rep, err
		}
	}
	for _, r := range cfg.Replicas {
		if r.File {
			rep.Replicas = append(rep.Replicas, fileReplicaReport(ctx, origin, cfg.Name, r))
			continue
		}
		rep.Replicas = append(rep.Replicas, replicaReport(ctx, origin, cfg.Name, r, n))
	}
	return rep, nil
}

// connectReader opens a session for reads, with statement_timeout set to
// DeadPath.
func connectReader(ctx context.Context, role, dsn string, n pg.Net) (*pgx.Conn, error) {
	c, err := pg.ConnectNet(ctx, role, dsn, "pgreplica status", n)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("SET statement_timeout = %d", n.DeadPath/time.Millisecond)); err != nil {
		closeSoon(c)
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	return c, nil
}

func replicaReport(outer context.Context, origin *pgx.Conn, set string, r config.Replica, n pg.Net) ReplicaReport {
	rr := ReplicaReport{Name: r.Name, Target: config.Describe(r.DSN), PendingUnknown: true}
	ctx, cancel := context.WithTimeout(outer, n.ConnectTimeout+n.DeadPath)
	defer cancel()
	conn, err := connectReader(ctx, "replica "+r.Name, r.DSN, n)
	if err != nil {
		rr.Error = deadPath(outer, ctx, err, "replica "+r.Name, n.ConnectTimeout+n.DeadPath).Error()
		return rr
	}
	defer closeSoon(conn)
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
		for t, st := range states {
			if !st.Waiting() {
				continue
			}
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
	rr.PendingUnknown = false
	if oldest != nil {
		rr.Lag = time.Since(*oldest)
	}
	return rr
}

// queryNodes is the report of a multi-master set: one row per direction,
// named "a->b". A node that cannot be read makes its directions'
// rows unreachable; the others are read all the same. An engine runs for
// the set when one runs for every direction.
func queryNodes(ctx context.Context, cfg *config.Config, stale bool) Report {
	rep := Report{Set: cfg.Name, DaemonRunning: true, TakenAt: time.Now()}
	var names []string
	for _, n := range cfg.Nodes {
		names = append(names, n.Name)
	}
	rep.Origin = "nodes " + strings.Join(names, ", ")
	for _, d := range cfg.Directions("") {
		r, err := queryStatus(ctx, d, stale)
		if err != nil {
			rep.DaemonRunning = false
			for _, x := range d.Replicas {
				rep.Replicas = append(rep.Replicas, ReplicaReport{Name: config.DirectionLabel(d.Source, x.Name),
					Target: config.Describe(x.DSN), PendingUnknown: true, Error: "node " + d.Source + ": " + err.Error()})
			}
			continue
		}
		rep.DaemonRunning = rep.DaemonRunning && r.DaemonRunning
		rep.LogEvents += r.LogEvents
		for _, t := range r.Stale {
			rep.Stale = append(rep.Stale, d.Source+":"+t)
		}
		for _, x := range r.Replicas {
			x.Name = config.DirectionLabel(d.Source, x.Name)
			rep.Replicas = append(rep.Replicas, x)
		}
	}
	return rep
}
