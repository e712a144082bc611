package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/rule"
	pgsql "pgreplica/sql"
)

// Report receives one line per thing done, for the operator.
type Report func(line string)

// session holds the connections of one install-like operation.
type session struct {
	cfg      *config.Config
	origin   *pgx.Conn
	net      []config.Replica // the replicas reached through a connection (not file replicas)
	replicas []*pgx.Conn      // their connections, in the same order
}

func open(ctx context.Context, cfg *config.Config) (*session, error) {
	s := &session{cfg: cfg}
	var err error
	if s.origin, err = pg.ConnectOrigin(ctx, cfg, ""); err != nil {
		return nil, err
	}
	s.net = cfg.Connected()
	for _, r := range s.net {
		c, err := pg.ConnectReplica(ctx, r, "")
		if err != nil {
			s.close(ctx)
			return nil, err
		}
		s.replicas = append(s.replicas, c)
	}
	return s, nil
}

func (s *session) close(ctx context.Context) {
	if s.origin != nil {
		s.origin.Close(ctx)
	}
	for _, c := range s.replicas {
		c.Close(ctx)
	}
}

// Options are the choices of Install and AddTables.
type Options struct {
	// Recapture captures again tables whose capture was removed
	// (remove-table). Their replicas missed the changes made meanwhile, so
	// the caller either copies them again (sync) or the operator accepted
	// the difference (--no-sync). Without it such tables are refused.
	Recapture bool
	// DisableReplicaTriggers disables, on each replica whose apply role
	// cannot set session_replication_role, the replica's own user triggers
	// on the replicated tables (the operator agreed: they would otherwise
	// run on every applied change).
	DisableReplicaTriggers bool
	// Some: the config's tables are some of the replicated tables (sync
	// installs capture table by table): the replicas' rules of the other
	// tables are neither checked nor changed.
	Some bool
	// FixSequences, on a multi-master set, sets the replicated tables'
	// sequences that could give the same value on two nodes to an offset
	// per node (the operator agreed) instead of refusing to install.
	FixSequences bool
}

// ErrRemoved is returned (wrapped) when tables whose capture was removed
// were left out because Options.Recapture was not set.
var ErrRemoved = errors.New("capture of these tables was removed: their replicas need a new copy")

// Install installs or upgrades capture on the origin (schema, triggers on
// every selected table) and the bookkeeping schema on every replica.
// Everything is checked before anything is changed; re-running it changes
// nothing that is current, and completes an install that an error cut
// short. It works while the origin is busy: each table is done in a short
// transaction of its own.
func Install(ctx context.Context, cfg *config.Config, report Report) error {
	return InstallWith(ctx, cfg, Options{}, report)
}

// InstallWith is Install with options. Tables whose capture was removed
// are left out (and reported, and the error wraps ErrRemoved) unless
// opt.Recapture is set; the rest is installed all the same.
func InstallWith(ctx context.Context, cfg *config.Config, opt Options, report Report) error {
	if cfg.MultiMaster() {
		return installNodes(ctx, cfg, opt, report)
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	tables, err := ListTables(ctx, s.origin, cfg.Tables.Match)
	if err != nil {
		return err
	}
	var keyed []pg.Table
	for _, t := range tables {
		if t.Status != NoKey {
			keyed = append(keyed, t.Table)
		}
	}
	if err := s.checkReplicasHave(ctx, keyed); err != nil {
		return err
	}
	rules, err := s.checkRules(ctx, tables, !opt.Some)
	if err != nil {
		return err
	}
	var removed []string
	if !opt.Recapture {
		kept := tables[:0:0]
		for _, t := range tables {
			if t.Status == Removed {
				removed = append(removed, t.Table.String())
				report(removedLine(t.Table))
				continue
			}
			kept = append(kept, t)
		}
		tables = kept
	}
	snap, err := s.installOrigin(ctx, tables, rules, report)
	if err != nil {
		return err
	}
	var captured []pg.Table
	for _, t := range tables {
		if t.Status != NoKey {
			captured = append(captured, t.Table)
		}
	}
	for i, r := range s.net {
		if err := installReplica(ctx, s.replicas[i], r.Name, cfg.Name, snap, report); err != nil {
			return err
		}
		targets := make([]pg.Table, len(captured)) // the replica's names of the captured tables
		for j, t := range captured {
			targets[j] = rule.Target(rule.Of(r, t), t)
		}
		if err := checkReplicaSide(ctx, s.replicas[i], r.Name, targets, opt.DisableReplicaTriggers, report); err != nil {
			return err
		}
		if err := fence(ctx, s.replicas[i], cfg, r, targets, report); err != nil {
			return err
		}
	}
	for _, r := range cfg.Replicas {
		if r.File {
			report(fmt.Sprintf("replica %s: file replica, registered on the origin (its events are kept until acknowledged); start it with pgreplica export --base --replica %s", r.Name, r.Name))
		}
	}
	if len(removed) > 0 {
		return fmt.Errorf("%w: %s; copy them again with pgreplica add-table --sync %s, or accept the difference with --no-sync",
			ErrRemoved, strings.Join(removed, ", "), strings.Join(removed, " "))
	}
	return nil
}

func removedLine(t pg.Table) string {
	return fmt.Sprintf("%s: capture was removed earlier; not captured again without a new copy", t)
}

// installOrigin installs the schema, the triggers and the registration of
// the replicas on the origin. Each table's triggers are created in a short
// transaction of their own (with a lock timeout, retried when busy): one
// transaction for all would deadlock with application transactions that
// write several tables. It returns the snapshot taken before any trigger
// was created: every transaction not visible in it is captured.
func (s *session) installOrigin(ctx context.Context, tables []TableInfo, rules map[pg.Table]*tableRules, report Report) (string, error) {
	var snap string
	if err := s.origin.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return "", fmt.Errorf("origin: take snapshot: %w", err)
	}
	err := retryBusy(ctx, func() error {
		return inTx(ctx, s.origin, func(tx pgx.Tx) error {
			v, err := SchemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v == pgsql.OriginVersion {
				report(fmt.Sprintf("origin: capture schema is current (version %s)", v))
				return nil
			}
			if _, err := tx.Exec(ctx, pgsql.Origin); err != nil {
				return fmt.Errorf("install capture schema: %w", err)
			}
			verb := "installed"
			if v != "" {
				verb = "upgraded"
			}
			report(fmt.Sprintf("origin: %s capture schema (version %s)", verb, pgsql.OriginVersion))
			return nil
		})
	})
	if err != nil {
		return "", fmt.Errorf("origin: %w", err)
	}
	var ddl bool
	if err := s.origin.QueryRow(ctx, "SELECT pgreplica.ensure_event_trigger()").Scan(&ddl); err != nil {
		return "", fmt.Errorf("origin: event trigger: %w", err)
	}
	if !ddl {
		report("origin: no event trigger (creating one needs a superuser): after an ALTER TABLE of a captured table, run pgreplica install again (pgreplica tables shows such tables as stale)")
		if s.cfg.DDL.Capture {
			return "", errors.New("origin: ddl.capture needs the event trigger, which only a superuser's install creates; run install as a superuser, or use pgreplica execute for schema changes")
		}
	}
	ddlCapture := map[bool]string{true: "on", false: "off"}[s.cfg.DDL.Capture]
	if _, err := s.origin.Exec(ctx, `INSERT INTO pgreplica.meta (key, value) VALUES ('ddl_capture', $1)
	                                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
	                                  WHERE pgreplica.meta.value <> EXCLUDED.value`, ddlCapture); err != nil {
		return "", fmt.Errorf("origin: record ddl.capture: %w", err)
	}
	if s.cfg.DDL.Capture {
		report("origin: ddl.capture is on: a plain ALTER TABLE of a captured table reaches every replica in the stream")
	}
	var keyed []pg.Table
	for _, t := range tables {
		if t.Status != NoKey {
			keyed = append(keyed, t.Table)
		}
	}
	if err := s.recordRules(ctx, rules, keyed, report); err != nil {
		return "", err
	}
	if err := recordSkipRoles(ctx, s.origin, s.cfg.SkipRoles, report); err != nil {
		return "", err
	}
	drift := slices.Clone(s.cfg.Conflicts.DetectDrift)
	slices.Sort(drift)
	if drift == nil {
		drift = []string{}
	}
	if _, err := s.origin.Exec(ctx, `INSERT INTO pgreplica.meta (key, value) VALUES ('drift_tables', to_jsonb($1::text[])::text)
	                                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
	                                  WHERE pgreplica.meta.value::jsonb <> EXCLUDED.value::jsonb`, drift); err != nil {
		return "", fmt.Errorf("origin: record conflicts.detect_drift: %w", err)
	}
	if s.cfg.Source != "" {
		// Multi-master: the capture functions keep each row's version and
		// every table gets its apply function (sql/origin.sql).
		if _, err := s.origin.Exec(ctx, `INSERT INTO pgreplica.meta (key, value) VALUES ('mm_node', $1)
		                                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
		                                  WHERE pgreplica.meta.value <> EXCLUDED.value`, s.cfg.Source); err != nil {
			return "", fmt.Errorf("origin: record the node's name: %w", err)
		}
	}
	for _, t := range tables {
		line, err := addTableRetried(ctx, s.origin, t.Table)
		if err != nil {
			return "", err
		}
		report(line)
	}
	err = inTx(ctx, s.origin, func(tx pgx.Tx) error {
		for _, r := range s.cfg.Replicas {
			if _, err := tx.Exec(ctx, `INSERT INTO pgreplica.replica (name, snapshot) VALUES ($1, $2::pg_snapshot)
			                           ON CONFLICT (name) DO NOTHING`, r.Name, snap); err != nil {
				return fmt.Errorf("register replica %s: %w", r.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("origin: %w", err)
	}
	return snap, nil
}

// inTx runs f in a transaction with a 5s lock timeout and commits.
func inTx(ctx context.Context, conn *pgx.Conn, f func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// retryBusy runs f again (up to 5 times, with a growing pause) while it
// fails on a deadlock or a lock timeout: creating a trigger needs a lock
// that busy application transactions hold for a moment.
func retryBusy(ctx context.Context, f func() error) error {
	return pg.Retry(ctx, 5, 200*time.Millisecond, pg.IsLockBusy, f)
}

// addTableRetried installs one table's triggers in a transaction of its own.
func addTableRetried(ctx context.Context, conn *pgx.Conn, t pg.Table) (string, error) {
	var line string
	err := retryBusy(ctx, func() error {
		return inTx(ctx, conn, func(tx pgx.Tx) error {
			var err error
			line, err = addTable(ctx, tx, t)
			return err
		})
	})
	if err != nil && pg.IsLockBusy(err) {
		return "", fmt.Errorf("install trigger on %s: %w; the table is busy: retry later", t, err)
	}
	return line, err
}

// installReplica installs the bookkeeping schema on one replica and sets its
// starting position for the set unless it has one already.
func installReplica(ctx context.Context, conn *pgx.Conn, name, set, snap string, report Report) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("replica %s: begin: %w", name, err)
	}
	defer tx.Rollback(ctx)
	v, err := ReplicaSchemaVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	if v != pgsql.ReplicaVersion {
		if _, err := tx.Exec(ctx, pgsql.Replica); err != nil {
			return fmt.Errorf("replica %s: install bookkeeping schema: %w", name, err)
		}
	}
	tag, err := tx.Exec(ctx, `INSERT INTO pgreplica.position (set_name, snapshot) VALUES ($1, $2)
	                          ON CONFLICT (set_name) DO NOTHING`, set, snap)
	if err != nil {
		return fmt.Errorf("replica %s: set position: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("replica %s: commit: %w", name, err)
	}
	switch {
	case v == pgsql.ReplicaVersion && tag.RowsAffected() == 0:
		report(fmt.Sprintf("replica %s: bookkeeping schema is current (version %s)", name, v))
	case tag.RowsAffected() == 1:
		report(fmt.Sprintf("replica %s: installed bookkeeping schema (version %s), replicating from now on", name, pgsql.ReplicaVersion))
	default:
		report(fmt.Sprintf("replica %s: upgraded bookkeeping schema (version %s)", name, pgsql.ReplicaVersion))
	}
	return nil
}

// addTable installs the capture triggers on one table and returns the line
// that pgreplica.add_table reports.
func addTable(ctx context.Context, q Querier, t pg.Table) (string, error) {
	var line *string
	// The decision about tables whose capture was removed is made by the
	// caller (Options.Recapture).
	err := q.QueryRow(ctx, "SELECT pgreplica.add_table(to_regclass($1), true)", t.Ident()).Scan(&line)
	if err != nil {
		return "", fmt.Errorf("install trigger on %s: %w", t, err)
	}
	if line == nil {
		return "", fmt.Errorf("install trigger on %s: no such table on the origin", t)
	}
	return *line, nil
}

// checkReplicasHave makes sure every replica has each table with every
// column the origin captures, so that nothing is installed that could not
// be applied.
func (s *session) checkReplicasHave(ctx context.Context, tables []pg.Table) error {
	if len(tables) == 0 || len(s.replicas) == 0 {
		return nil
	}
	want := make(map[pg.Table][]string, len(tables))
	keys := make(map[pg.Table][]string, len(tables))
	for _, t := range tables {
		cols, err := capturedColumns(ctx, s.origin, t)
		if err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		want[t] = cols
		if _, key, err := rule.Columns(ctx, s.origin, t); err == nil {
			keys[t] = key
		}
	}
	var problems []error
	for i, r := range s.net {
		for _, t := range tables {
			need, to := want[t], t
			if tr := rule.Of(r, t); tr != nil {
				need, to = rule.Project(tr, want[t], keys[t]).Replica, rule.Target(tr, t)
			}
			have, err := capturedColumns(ctx, s.replicas[i], to)
			if err != nil {
				return fmt.Errorf("replica %s: %w", r.Name, err)
			}
			if have == nil && to != t {
				problems = append(problems, fmt.Errorf("replica %s lacks table %s (the target of %s); create it there", r.Name, to, t))
				continue
			}
			if have == nil {
				problems = append(problems, fmt.Errorf("replica %s lacks table %s; create it there (pgreplica sync --schema) or exclude it under tables.exclude", r.Name, t))
				continue
			}
			if missing := minus(need, have); len(missing) > 0 {
				problems = append(problems, fmt.Errorf("replica %s: table %s lacks column %s", r.Name, to, strings.Join(quoteAll(missing), ", ")))
			}
		}
	}
	return errors.Join(problems...)
}

// capturedColumns lists a table's non-generated columns, or nil when the
// table does not exist.
func capturedColumns(ctx context.Context, q Querier, t pg.Table) ([]string, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.Ident()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up %s: %w", t, err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT attname::text FROM pg_attribute
	                            WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
	                              AND attgenerated = '' ORDER BY attnum`, t.Ident())
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", t, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", t, err)
	}
	return append([]string{}, cols...), nil
}

func minus(a, b []string) []string {
	have := make(map[string]bool, len(b))
	for _, x := range b {
		have[x] = true
	}
	var out []string
	for _, x := range a {
		if !have[x] {
			out = append(out, x)
		}
	}
	return out
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = pg.Name(n)
	}
	return out
}

// AddTables installs capture on the named tables, one at a time, each after
// checking that every replica has it.
func AddTables(ctx context.Context, cfg *config.Config, tables []pg.Table, report Report) error {
	return AddTablesWith(ctx, cfg, tables, Options{}, report)
}

// AddTablesWith is AddTables with options: a table whose capture was
// removed is refused (ErrRemoved) unless opt.Recapture is set.
func AddTablesWith(ctx context.Context, cfg *config.Config, tables []pg.Table, opt Options, report Report) error {
	s, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	if err := requireOrigin(ctx, s.origin); err != nil {
		return err
	}
	if !opt.Recapture {
		removed, err := RemovedTables(ctx, s.origin)
		if err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		for _, t := range tables {
			if slices.Contains(removed, t) {
				return fmt.Errorf("%w: %s; copy it again with pgreplica add-table --sync %s, or accept the difference with --no-sync",
					ErrRemoved, t, t)
			}
		}
	}
	for _, t := range tables {
		if err := s.checkReplicasHave(ctx, []pg.Table{t}); err != nil {
			return err
		}
	}
	infos, err := ListTables(ctx, s.origin, func(schema, table string) bool {
		return slices.Contains(tables, pg.Table{Schema: schema, Name: table})
	})
	if err != nil {
		return err
	}
	rules, err := s.checkRules(ctx, infos, false)
	if err != nil {
		return err
	}
	if err := s.recordRules(ctx, rules, tables, report); err != nil {
		return err
	}
	for _, t := range tables {
		line, err := addTableRetried(ctx, s.origin, t)
		if err != nil {
			return err
		}
		report(line)
	}
	return nil
}

// RemoveTables removes capture from the named tables. Their events already
// in the log are still applied.
func RemoveTables(ctx context.Context, cfg *config.Config, tables []pg.Table, report Report) error {
	conn, err := pg.ConnectOrigin(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := requireOrigin(ctx, conn); err != nil {
		return err
	}
	for _, t := range tables {
		var line *string
		if err := conn.QueryRow(ctx, "SELECT pgreplica.remove_table(to_regclass($1))", t.Ident()).Scan(&line); err != nil {
			return fmt.Errorf("remove trigger from %s: %w", t, err)
		}
		if line == nil {
			return fmt.Errorf("remove trigger from %s: no such table on the origin", t)
		}
		report(*line)
	}
	return nil
}

func requireOrigin(ctx context.Context, conn *pgx.Conn) error {
	v, err := SchemaVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if v == "" {
		return errors.New("capture is not installed on the origin; run pgreplica install first")
	}
	if v != pgsql.OriginVersion {
		return fmt.Errorf("the origin's capture schema is version %s, this pgreplica needs %s; run pgreplica install to upgrade it", v, pgsql.OriginVersion)
	}
	return nil
}

// Uninstall removes the capture triggers and the pgreplica schema from the
// origin and the pgreplica schema from every replica. Application tables
// and rows are not touched.
func Uninstall(ctx context.Context, cfg *config.Config, report Report) error {
	if cfg.MultiMaster() {
		for _, d := range cfg.Directions("") {
			if err := Uninstall(ctx, d, nodeReport(d.Source, report)); err != nil {
				return fmt.Errorf("node %s: %w", d.Source, err)
			}
		}
		return nil
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	tx, err := s.origin.Begin(ctx)
	if err != nil {
		return fmt.Errorf("origin: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `
SELECT n.nspname, c.relname, t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname IN ('pgreplica_capture', 'pgreplica_truncate')
 ORDER BY 1, 2, 3`)
	if err != nil {
		return fmt.Errorf("origin: list triggers: %w", err)
	}
	type trig struct {
		t    pg.Table
		name string
	}
	trigs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (trig, error) {
		var x trig
		return x, r.Scan(&x.t.Schema, &x.t.Name, &x.name)
	})
	if err != nil {
		return fmt.Errorf("origin: list triggers: %w", err)
	}
	for _, tr := range trigs {
		if _, err := tx.Exec(ctx, "DROP TRIGGER "+pgx.Identifier{tr.name}.Sanitize()+" ON "+tr.t.Ident()); err != nil {
			return fmt.Errorf("origin: drop trigger on %s: %w", tr.t, err)
		}
		if tr.name == "pgreplica_capture" {
			report("removed trigger from " + tr.t.String())
		}
	}
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS pgreplica CASCADE"); err != nil {
		return fmt.Errorf("origin: drop schema pgreplica: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("origin: commit: %w", err)
	}
	report("origin: removed schema pgreplica")
	for i, r := range s.net {
		if _, err := s.replicas[i].Exec(ctx, "DROP SCHEMA IF EXISTS pgreplica CASCADE"); err != nil {
			return fmt.Errorf("replica %s: drop schema pgreplica: %w", r.Name, err)
		}
		report(fmt.Sprintf("replica %s: removed schema pgreplica", r.Name))
	}
	return nil
}

// recordSkipRoles stores skip_roles where the capture functions' generator
// reads it (pgreplica.meta skip_roles); the triggers made after it (every
// table's, as its function is then no longer current) have it compiled in.
func recordSkipRoles(ctx context.Context, conn *pgx.Conn, roles []string, report Report) error {
	list := slices.Clone(roles)
	slices.Sort(list)
	if list == nil {
		list = []string{}
	}
	tag, err := conn.Exec(ctx, `INSERT INTO pgreplica.meta (key, value) VALUES ('skip_roles', to_jsonb($1::text[])::text)
	                             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
	                             WHERE pgreplica.meta.value::jsonb <> EXCLUDED.value::jsonb`, list)
	if err != nil {
		return fmt.Errorf("origin: record skip_roles: %w", err)
	}
	if tag.RowsAffected() > 0 && len(list) > 0 {
		report("origin: writes by " + strings.Join(list, ", ") + " are not captured (skip_roles)")
	}
	return nil
}
