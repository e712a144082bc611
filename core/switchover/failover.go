package switchover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/control"
	"pgreplica/core/pg"
	"pgreplica/core/verify"
)

// Failover is `pgreplica failover --to R`: the origin is lost, and replica
// R becomes the origin without it. What R had not applied of the old
// origin's log is lost to the new set (ReportLost lists it once the old
// origin can be read again); the other replicas, which may stand before or
// after R, are made equal to R by verify --repair on the difference
// (never a full copy). It is not persisted step by step like a
// switchover: every step can be run again, so an interrupted failover is
// finished by running it again (until the config is rewritten, which is
// its last step).
type Failover struct {
	old, new *config.Config
	path     string
	opt      Options
	lines    []string
}

// Lines is the plan, for the operator.
func (f *Failover) Lines() []string { return f.lines }

// lostKey is where the new origin keeps, in pgreplica.meta, how far it had
// applied the old origin's log: what ReportLost reads.
func lostKey(set string) string { return "failover_position." + set }

// failoverPosition is the value at lostKey.
type failoverPosition struct {
	Snapshot  string  `json:"snapshot"`
	Target    *string `json:"target,omitempty"`
	LastID    *int64  `json:"last_id,omitempty"`
	OldOrigin string  `json:"old_origin"` // user@host:port/db
	At        string  `json:"at"`
}

// PrepareFailover checks the failover of the set of the config at path to
// opt.To and returns its plan; it changes nothing. It refuses an origin
// that still answers (a switchover loses nothing), a name that is not a
// replica, a replica that cannot be read, and a running daemon.
func PrepareFailover(ctx context.Context, path string, opt Options) (*Failover, error) {
	old, err := loadToMove("failover", path, opt.Environ)
	if err != nil {
		return nil, err
	}
	n, err := withoutOrigin(old, opt.To)
	if err != nil {
		return nil, err
	}
	f := &Failover{old: old, new: n, path: path, opt: opt}
	if c, err := pg.ConnectOrigin(ctx, old, "failover "+old.Name); err == nil {
		c.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("failover: the origin %s answers: use pgreplica switchover --to %s, which loses nothing", config.Describe(old.Origin.DSN), opt.To)
	}
	if s := old.Control.Socket; s != "" {
		if err := control.Check(s); err != nil {
			return nil, fmt.Errorf("failover: a pgreplica daemon of set %s is running (%v): stop it first", old.Name, err)
		}
	}
	for _, r := range old.Connected() {
		c, err := pg.ConnectReplica(ctx, r, "failover "+old.Name)
		if err != nil {
			return nil, fmt.Errorf("failover: %w: every replica must follow the new origin", err)
		}
		var pid *int
		err = c.QueryRow(ctx, `SELECT min(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
			"pgreplica apply "+old.Name).Scan(&pid)
		var sp SavedPosition
		if err == nil {
			sp, err = readPosition(ctx, c, old.Name)
		}
		c.Close(context.WithoutCancel(ctx))
		switch {
		case err != nil:
			return nil, fmt.Errorf("failover: replica %s: %w", r.Name, err)
		case pid != nil:
			return nil, fmt.Errorf("failover: a pgreplica daemon of set %s applies replica %s (its session pid %d): stop it first", old.Name, r.Name, *pid)
		case !sp.Exists && r.Name == opt.To && !f.recorded(ctx, r):
			return nil, fmt.Errorf("failover: replica %s has no position for set %s: it is not a replica of the set", r.Name, old.Name)
		}
	}
	r, _ := old.Replica(opt.To)
	var others []string
	for _, x := range n.Connected() {
		others = append(others, x.Name)
	}
	f.lines = []string{
		fmt.Sprintf("failover of set %s: the origin %s is lost; replica %s (%s) becomes the origin", old.Name, config.Describe(old.Origin.DSN), r.Name, config.Describe(r.DSN)),
		fmt.Sprintf("  1 record    how far %s applied the old origin's log (for failover --report-lost)", r.Name),
		fmt.Sprintf("  2 promote   install capture on %s; its sequences never below max() of the columns that use them", r.Name),
		fmt.Sprintf("  3 repoint   %s: each starts from %s's snapshot, made equal to it by verify --repair", orNone(others), r.Name),
		fmt.Sprintf("  4 unfence   %s takes the writes", r.Name),
		fmt.Sprintf("  5 config    rewrite %s without the old origin (the old one kept as %s.bak-TIME)", path, path),
		fmt.Sprintf("what %s had not applied of the old origin is lost to the set: list it later with pgreplica failover --report-lost --from OLD-ORIGIN-DSN", r.Name),
	}
	return f, nil
}

// recorded reports whether replica r holds the record of a failover of
// the set to it: a failover that was interrupted after its promote step
// (r has no position any more) is finished by running it again.
func (f *Failover) recorded(ctx context.Context, r config.Replica) bool {
	c, err := pg.ConnectReplica(ctx, r, "failover "+f.old.Name)
	if err != nil {
		return false
	}
	defer c.Close(context.WithoutCancel(ctx))
	var n int
	err = c.QueryRow(ctx, "SELECT count(*) FROM pgreplica.meta WHERE key = $1", lostKey(f.old.Name)).Scan(&n)
	return err == nil && n == 1
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no other replica"
	}
	return strings.Join(names, ", ")
}

// withoutOrigin is the config after the failover of old to replica to:
// its DSN is the origin's, and the old origin is gone.
func withoutOrigin(old *config.Config, to string) (*config.Config, error) {
	idx, _, err := candidate("failover", old, to)
	if err != nil {
		return nil, err
	}
	n := *old
	n.Origin.DSN = old.Replicas[idx].DSN
	n.Replicas = append(append([]config.Replica{}, old.Replicas[:idx]...), old.Replicas[idx+1:]...)
	return &n, nil
}

// Run makes the failover and returns verify's result on the new set
// (after the repair of the other replicas).
func (f *Failover) Run(ctx context.Context) (verify.Result, error) {
	var res verify.Result
	r, _ := f.old.Replica(f.opt.To)
	rconn, err := pg.ConnectReplica(ctx, r, "failover "+f.old.Name)
	if err != nil {
		return res, err
	}
	defer rconn.Close(context.WithoutCancel(ctx))

	// 1 record (a failover run again once its position row is gone keeps
	// the record of the first run).
	sp, err := readPosition(ctx, rconn, f.old.Name)
	if err != nil {
		return res, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if sp.Exists {
		v, _ := json.Marshal(failoverPosition{Snapshot: sp.Snapshot, Target: sp.Target, LastID: sp.LastID,
			OldOrigin: config.Describe(f.old.Origin.DSN), At: f.opt.now().UTC().Format(time.RFC3339)})
		if _, err := rconn.Exec(ctx, `INSERT INTO pgreplica.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, lostKey(f.old.Name), string(v)); err != nil {
			return res, fmt.Errorf("replica %s: record its position: %w", r.Name, err)
		}
		f.opt.report(fmt.Sprintf("step 1/5 record: %s had applied the old origin's log up to %s", r.Name, sp.Snapshot))
	}

	// 2 promote
	if err := freshLog(ctx, rconn); err != nil {
		return res, fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if err := capture.InstallWith(ctx, f.new, capture.Options{Recapture: true}, func(l string) { f.opt.report("install: " + l) }); err != nil {
		return res, fmt.Errorf("failover: install on the new set: %w", err)
	}
	rows, err := rconn.Query(ctx, `SELECT pgreplica.table_name(s.seq) FROM pgreplica.captured_sequences() s ORDER BY 1`)
	if err != nil {
		return res, fmt.Errorf("new origin: sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return res, fmt.Errorf("new origin: sequences: %w", err)
	}
	for _, s := range seqs {
		line, err := setSequence(ctx, rconn, s, nil)
		if err != nil {
			return res, fmt.Errorf("new origin: sequence %s: %w", s, err)
		}
		f.opt.report(fmt.Sprintf("sequence %s on %s: %s", s, r.Name, line))
	}
	var snap string
	if err := rconn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return res, fmt.Errorf("new origin: take snapshot: %w", err)
	}
	if err := register(ctx, rconn, f.new, snap); err != nil {
		return res, err
	}
	f.opt.report(fmt.Sprintf("step 2/5 promote: %s is the origin of set %s (snapshot %s)", r.Name, f.new.Name, snap))
	f.opt.at("failover.promoted")

	// 3 repoint
	if err := setPositions(ctx, f.new, snap); err != nil {
		return res, err
	}
	if len(f.new.Connected()) > 0 {
		rep, err := verify.Run(ctx, f.new, verify.Options{Repair: true, MaxKeys: 1000})
		if err != nil {
			return res, fmt.Errorf("failover: verify --repair: %w", err)
		}
		for _, x := range rep.Replicas {
			var del, ins, upd int64
			for _, t := range x.Tables {
				if t.Repaired != nil {
					del, ins, upd = del+t.Repaired.Deleted, ins+t.Repaired.Inserted, upd+t.Repaired.Updated
				}
			}
			f.opt.report(fmt.Sprintf("step 3/5 repoint: replica %s follows %s; repaired %d deleted, %d inserted, %d updated", x.Name, r.Name, del, ins, upd))
		}
	}

	// 4 unfence
	if err := dropTriggers(ctx, rconn, "pgreplica_fence"); err != nil {
		return res, fmt.Errorf("new origin: %w", err)
	}
	f.opt.report(fmt.Sprintf("step 4/5 unfence: %s takes the writes", r.Name))

	// 5 config
	data, err := os.ReadFile(f.path)
	if err != nil {
		return res, fmt.Errorf("failover: %w", err)
	}
	backup := f.path + ".bak-" + f.opt.now().UTC().Format("20060102T150405Z")
	if err := writeAtomic(backup, data, 0o600); err != nil {
		return res, fmt.Errorf("failover: back up the config: %w", err)
	}
	out, err := removedOriginConfig(data, f.opt.To)
	if err != nil {
		return res, fmt.Errorf("failover: rewrite %s: %w", f.path, err)
	}
	if err := writeConfig(f.path, out); err != nil {
		return res, fmt.Errorf("failover: rewrite %s: %w", f.path, err)
	}
	f.opt.report(fmt.Sprintf("step 5/5 config: %s names %s as the origin, without the old one (kept in %s)", f.path, r.Name, backup))

	if len(f.new.Connected()) == 0 {
		return verify.Result{Equal: true}, nil
	}
	res, err = verify.Run(ctx, f.new, verify.Options{MaxKeys: 10})
	if err != nil {
		return res, fmt.Errorf("failover: verify: %w", err)
	}
	for _, x := range res.Replicas {
		word := "equal"
		if !x.Equal {
			word = "DIFFERENT"
		}
		f.opt.report(fmt.Sprintf("verify: replica %s: %s (%d tables)", x.Name, word, len(x.Tables)))
	}
	return res, nil
}

// register makes the new origin's registry of replicas the set's, at snap,
// and removes its own replica bookkeeping of the set.
func register(ctx context.Context, c *pgx.Conn, cfg *config.Config, snap string) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "DELETE FROM pgreplica.replica"); err != nil {
		return fmt.Errorf("new origin: registry: %w", err)
	}
	for _, x := range cfg.Replicas {
		if _, err := tx.Exec(ctx, "INSERT INTO pgreplica.replica (name, snapshot) VALUES ($1, $2::pg_snapshot)", x.Name, snap); err != nil {
			return fmt.Errorf("new origin: register %s: %w", x.Name, err)
		}
	}
	for _, q := range []string{"DELETE FROM pgreplica.position WHERE set_name = $1", "DELETE FROM pgreplica.table_state WHERE set_name = $1", "DELETE FROM pgreplica.held WHERE set_name = $1"} {
		if _, err := tx.Exec(ctx, q, cfg.Name); err != nil {
			return fmt.Errorf("new origin: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("new origin: %w", err)
	}
	return nil
}

// setPositions starts every replica of cfg at snap of the new origin.
func setPositions(ctx context.Context, cfg *config.Config, snap string) error {
	for _, x := range cfg.Connected() {
		c, err := pg.ConnectReplica(ctx, x, "switchover "+cfg.Name)
		if err != nil {
			return err
		}
		_, err = c.Exec(ctx, `INSERT INTO pgreplica.position (set_name, snapshot) VALUES ($1, $2)
		                      ON CONFLICT (set_name) DO UPDATE SET snapshot = EXCLUDED.snapshot, target = NULL, last_id = NULL,
		                                                           applied_events = 0, applied_at = now()`, cfg.Name, snap)
		c.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("replica %s: set position: %w", x.Name, err)
		}
	}
	return nil
}

// LostEvent is an event of the old origin's log that the new origin had
// not applied when it took over.
type LostEvent struct {
	ID     int64           `json:"id"`
	TxID   string          `json:"txid"`
	At     time.Time       `json:"at"`
	Table  string          `json:"table"` // "" for a sequence sample or a script
	Op     string          `json:"op"`
	Key    json.RawMessage `json:"key"`
	Data   json.RawMessage `json:"data"`
	Origin string          `json:"origin,omitempty"`
}

// LostReport is what failover --report-lost prints.
type LostReport struct {
	Set       string      `json:"set"`
	NewOrigin string      `json:"new_origin"`
	OldOrigin string      `json:"old_origin"`
	Position  string      `json:"position"` // how far the new origin had applied the old origin's log
	FailedAt  string      `json:"failed_over_at"`
	Events    []LostEvent `json:"events"`
}

// ReportLost lists the events of the old origin's log (read at fromDSN)
// that the origin of cfg (the new origin after a failover) had not
// applied when it took over. It changes nothing.
func ReportLost(ctx context.Context, cfg *config.Config, fromDSN string) (LostReport, error) {
	rep := LostReport{Set: cfg.Name, NewOrigin: config.Describe(cfg.Origin.DSN), OldOrigin: config.Describe(fromDSN)}
	conn, err := pg.ConnectOrigin(ctx, cfg, "failover "+cfg.Name)
	if err != nil {
		return rep, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, "SELECT value FROM pgreplica.meta WHERE key = $1", lostKey(cfg.Name)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) || pg.IsUndefinedTable(err) {
		return rep, fmt.Errorf("the origin %s records no failover of set %s: nothing to report", rep.NewOrigin, cfg.Name)
	}
	if err != nil {
		return rep, fmt.Errorf("origin: %w", err)
	}
	var fp failoverPosition
	if err := json.Unmarshal([]byte(v), &fp); err != nil {
		return rep, fmt.Errorf("origin: the recorded failover position: %w", err)
	}
	rep.Position, rep.FailedAt = fp.Snapshot, fp.At
	old, err := pg.Connect(ctx, "old origin", fromDSN)
	if err != nil {
		return rep, err
	}
	defer old.Close(context.WithoutCancel(ctx))
	rows, err := old.Query(ctx, `
SELECT id, txid::text, at, CASE WHEN table_name = '' THEN '' ELSE format('%I.%I', schema_name, table_name) END, op::text,
       coalesce(key, 'null'::jsonb), coalesce(data, 'null'::jsonb), coalesce(origin, '')
  FROM pgreplica.log
 WHERE NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
   AND NOT ($2::pg_snapshot IS NOT NULL AND pg_visible_in_snapshot(txid, $2::pg_snapshot) AND id <= $3)
 ORDER BY id`, fp.Snapshot, fp.Target, fp.LastID)
	if err != nil {
		return rep, fmt.Errorf("old origin: read its log: %w", err)
	}
	rep.Events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (LostEvent, error) {
		var e LostEvent
		var key, data string
		err := r.Scan(&e.ID, &e.TxID, &e.At, &e.Table, &e.Op, &key, &data, &e.Origin)
		e.Key, e.Data = json.RawMessage(key), json.RawMessage(data)
		return e, err
	})
	if err != nil {
		return rep, fmt.Errorf("old origin: read its log: %w", err)
	}
	if rep.Events == nil {
		rep.Events = []LostEvent{}
	}
	return rep, nil
}
