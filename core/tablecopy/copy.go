package tablecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/rule"
)

// tableInfo is what a worker needs to know of an origin table.
type tableInfo struct {
	table pg.Table
	cols  string // the non-generated columns, quoted, in origin order
	// The replica's rule (replicas[].tables): the origin columns it sends
	// (quoted), their names on the replica (quoted), the filter as install
	// checked it ("" for every row) and the rule's hash ("" for no rule).
	outCols, inCols string
	filter          string
	ruleHash        string
	target          pg.Table // the replica's table (rule target), else table
	rule            *config.TableRule
	proj            rule.Projection
	transforms      map[string]string // column -> the transform install checked
	partitioned     bool
	size            int64         // bytes on disk
	rows            int64         // estimate; 0 when unknown
	binaryOK        bool          // every column can travel in binary COPY format
	refs            []*tableInfo  // tables of this copy it references (foreign keys on the replica)
	copied          chan struct{} // closed when its copy has committed
}

// copier copies tables to one replica.
type copier struct {
	cfg      *config.Config
	replica  config.Replica
	tables   []pg.Table
	workers  int
	progress func(Progress)
	created  map[pg.Table]bool // created by this sync: no one else's indexes on them
}

// originSettings make the text forms of values exact and independent of
// the server's defaults (COPY text format, sequence values).
var originSettings = pg.ExactTextSQL(false, pg.Setting{Name: "statement_timeout", Value: "0"},
	pg.Setting{Name: "idle_in_transaction_session_timeout", Value: "0"})

var replicaSettings = pg.ExactTextSQL(false, pg.Setting{Name: "statement_timeout", Value: "0"})

// syncLockKey names the advisory lock that lets one sync at a time work on a
// replica for a set: two syncs of one table could otherwise commit their
// copies out of order.
func syncLockKey(set string) string { return "pgreplica sync " + set }

func (c *copier) run(ctx context.Context) error {
	r := c.replica
	ctl, err := replay.ConnectReplica(ctx, c.cfg, r, "sync")
	if err != nil {
		return err
	}
	defer ctl.Close(context.WithoutCancel(ctx))
	var locked bool
	if err := ctl.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", syncLockKey(c.cfg.Name)).Scan(&locked); err != nil {
		return fmt.Errorf("replica %s: take the sync lock: %w", r.Name, err)
	}
	if !locked {
		return fmt.Errorf("replica %s: another pgreplica sync of set %s is running there; wait for it to end", r.Name, c.cfg.Name)
	}

	// 1. Mark the tables 'copying' and commit: from now on the engine holds
	// their events instead of applying them.
	if err := c.setCopying(ctx, ctl); err != nil {
		return err
	}

	// 2. Take the snapshot C, after that commit, and export it.
	exp, err := pg.ConnectOrigin(ctx, c.cfg, "sync "+c.cfg.Name)
	if err != nil {
		return err
	}
	defer exp.Close(context.WithoutCancel(ctx))
	if _, err := exp.Exec(ctx, originSettings); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	etx, err := exp.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("origin: begin: %w", err)
	}
	defer etx.Rollback(context.WithoutCancel(ctx))
	var snap, exported string
	if err := etx.QueryRow(ctx, "SELECT pg_current_snapshot()::text, pg_export_snapshot()").Scan(&snap, &exported); err != nil {
		return fmt.Errorf("origin: take snapshot: %w", err)
	}
	infos := make([]*tableInfo, 0, len(c.tables))
	for _, t := range c.tables {
		ti, err := loadTableInfo(ctx, etx, t)
		if err != nil {
			return err
		}
		if err := c.applyRule(ctx, etx, ti); err != nil {
			return err
		}
		ti.copied = make(chan struct{})
		infos = append(infos, ti)
	}
	if err := readReferences(ctx, ctl, infos); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	orderForCopy(infos)
	sameMajor := major(exp) == major(ctl)

	// 3. Workers import the snapshot; once all have, the exporter may end.
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan struct{}, c.workers)
	jobs := make(chan *tableInfo)
	for range c.workers {
		g.Go(func() error {
			w, err := c.openWorker(gctx, exported)
			if err != nil {
				return err
			}
			defer w.close()
			ready <- struct{}{}
			for ti := range jobs {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				if err := waitForReferences(gctx, ti); err != nil {
					return err
				}
				if err := w.copyTable(gctx, ti, snap, sameMajor && ti.binaryOK); err != nil {
					return fmt.Errorf("replica %s: copy %s: %w; its changes are held there until a sync of it succeeds: run pgreplica sync again",
						r.Name, ti.table, err)
				}
				close(ti.copied)
			}
			return nil
		})
	}
	for started := 0; started < c.workers && gctx.Err() == nil; {
		select {
		case <-ready:
			started++
		case <-gctx.Done():
		}
	}
	if gctx.Err() == nil {
		_ = etx.Rollback(ctx)
	feed:
		for _, ti := range infos {
			select {
			case jobs <- ti:
			case <-gctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

func major(c *pgx.Conn) int {
	v, _ := strconv.Atoi(c.PgConn().ParameterStatus("server_version_num"))
	return v / 10000
}

func (c *copier) setCopying(ctx context.Context, ctl *pgx.Conn) error {
	schemas, names := make([]string, len(c.tables)), make([]string, len(c.tables))
	for i, t := range c.tables {
		t = rule.Target(rule.Of(c.replica, t), t) // the replica's name for it
		schemas[i], names[i] = t.Schema, t.Name
	}
	_, err := ctl.Exec(ctx, `
INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state, snapshot, updated_at)
SELECT $1, s, t, 'copying', NULL, now() FROM unnest($2::text[], $3::text[]) AS x(s, t)
    ON CONFLICT (set_name, schema_name, table_name)
    DO UPDATE SET state = 'copying', snapshot = NULL, updated_at = now()`, c.cfg.Name, schemas, names)
	if err != nil {
		return fmt.Errorf("replica %s: mark tables as being copied: %w", c.replica.Name, err)
	}
	return nil
}

// loadTableInfo reads what the copy needs of an origin table.
func loadTableInfo(ctx context.Context, q pgx.Tx, t pg.Table) (*tableInfo, error) {
	ti := &tableInfo{table: t}
	var kind string
	var cols []string
	err := q.QueryRow(ctx, `
SELECT c.relkind::text,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(greatest(l.reltuples, 0)), 0)::int8
                    FROM pg_partition_tree(c.oid) p JOIN pg_class l ON l.oid = p.relid WHERE p.isleaf)
            ELSE greatest(c.reltuples, 0)::int8 END,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0)::int8 FROM pg_partition_tree(c.oid) p WHERE p.isleaf)
            ELSE pg_relation_size(c.oid) END,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
  FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident()).Scan(&kind, &ti.rows, &ti.size, &cols)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("origin has no table %s", t)
	}
	if err != nil {
		return nil, fmt.Errorf("origin: read table %s: %w", t, err)
	}
	ti.partitioned = kind == "p"
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = pgx.Identifier{col}.Sanitize()
	}
	ti.cols = strings.Join(quoted, ", ")
	// Binary COPY checks the type oids of array elements and composite
	// attributes, which differ between databases for user-defined types.
	err = q.QueryRow(ctx, `
WITH RECURSIVE reach(oid, via) AS (
    SELECT a.atttypid, 'column' FROM pg_attribute a
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    UNION
    SELECT x.child, x.via FROM reach r JOIN pg_type t ON t.oid = r.oid
     CROSS JOIN LATERAL (
        SELECT t.typbasetype AS child, 'base' AS via WHERE t.typtype = 'd'
        UNION ALL SELECT t.typelem, 'element' WHERE t.typcategory = 'A' AND t.typelem <> 0
        UNION ALL SELECT a.atttypid, 'attribute' FROM pg_attribute a
                   WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL SELECT g.rngsubtype, 'subtype' FROM pg_range g WHERE g.rngtypid = t.oid) x
)
SELECT NOT EXISTS (SELECT 1 FROM reach WHERE via IN ('element', 'attribute') AND oid >= 16384)`, t.Ident()).Scan(&ti.binaryOK)
	if err != nil {
		return nil, fmt.Errorf("origin: read column types of %s: %w", t, err)
	}
	return ti, nil
}

// worker copies tables one after another: an origin transaction at the
// exported snapshot and a replica session set up like the apply session.
type worker struct {
	c       *copier
	origin  *pgx.Conn
	otx     pgx.Tx
	replica *pgx.Conn
}

func (c *copier) openWorker(ctx context.Context, exported string) (*worker, error) {
	w := &worker{c: c}
	var err error
	if w.origin, err = pg.ConnectOrigin(ctx, c.cfg, "sync "+c.cfg.Name); err != nil {
		return nil, err
	}
	if _, err := w.origin.Exec(ctx, originSettings); err != nil {
		w.close()
		return nil, fmt.Errorf("origin: %w", err)
	}
	if w.otx, err = w.origin.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
		w.close()
		return nil, fmt.Errorf("origin: begin: %w", err)
	}
	if _, err := w.otx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(exported)); err != nil {
		w.close()
		return nil, fmt.Errorf("origin: import snapshot: %w", err)
	}
	if w.replica, err = replay.ConnectReplica(ctx, c.cfg, c.replica, "sync"); err != nil {
		w.close()
		return nil, err
	}
	if _, err := w.replica.Exec(ctx, replicaSettings); err != nil {
		w.close()
		return nil, fmt.Errorf("replica %s: %w", c.replica.Name, err)
	}
	return w, nil
}

// quoteLiteral quotes a snapshot id (digits and dashes) as an SQL string;
// SET TRANSACTION SNAPSHOT takes no parameters.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (w *worker) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w.origin != nil {
		w.origin.Close(ctx)
	}
	if w.replica != nil {
		w.replica.Close(ctx)
	}
}

// replicaTable is what the copy needs of the replica's table.
type replicaTable struct {
	partitioned bool
	referenced  bool     // another table's foreign key points at it: TRUNCATE would fail
	rebuild     []string // index and constraint definitions to build after the copy
	drop        []string // their DROP statements, run before it
}

func (w *worker) replicaTable(ctx context.Context, tx pgx.Tx, t pg.Table, deferIndexes bool) (replicaTable, error) {
	var rt replicaTable
	var kind string
	err := tx.QueryRow(ctx, `
SELECT c.relkind::text,
       EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.oid AND f.contype = 'f' AND f.conrelid <> c.oid)
  FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident()).Scan(&kind, &rt.referenced)
	if errors.Is(err, pgx.ErrNoRows) {
		return rt, fmt.Errorf("the replica has no table %s (pgreplica sync --schema creates it)", t)
	}
	if err != nil {
		return rt, fmt.Errorf("read the replica's table: %w", err)
	}
	rt.partitioned = kind == "p"
	if !deferIndexes || rt.partitioned {
		return rt, nil
	}
	// A table this sync created holds only the indexes it made: build them
	// after the copy (faster than maintaining them row by row).
	rows, err := tx.Query(ctx, `
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', $1::text, conname),
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', $1::text, conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'x')
UNION ALL
SELECT format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
  FROM pg_index i WHERE i.indrelid = to_regclass($1)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                    AND k.contype IN ('p', 'u', 'x'))`, t.Ident())
	if err != nil {
		return rt, fmt.Errorf("read the replica's indexes: %w", err)
	}
	for rows.Next() {
		var drop, build string
		if err := rows.Scan(&drop, &build); err != nil {
			return rt, fmt.Errorf("read the replica's indexes: %w", err)
		}
		rt.drop = append(rt.drop, drop)
		rt.rebuild = append(rt.rebuild, build)
	}
	return rt, rows.Err()
}

// copyTable replaces the replica's rows of one table with the origin's at
// the snapshot snap, in one replica transaction that also moves the table
// to 'catchup' at snap.
func (w *worker) copyTable(ctx context.Context, ti *tableInfo, snap string, binaryFormat bool) error {
	t, to := ti.table, ti.target // the origin's table and the replica's
	start := time.Now()
	p := Progress{Replica: w.c.replica.Name, Table: t, TotalRows: ti.rows, TotalBytes: ti.size}
	w.c.progress(p)

	tx, err := w.replica.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rt, err := w.replicaTable(ctx, tx, to, w.c.created[to])
	if err != nil {
		return err
	}
	only := "ONLY "
	if rt.partitioned {
		only = ""
	}
	empty := "TRUNCATE " + only + to.Ident()
	if rt.referenced {
		empty = "DELETE FROM " + only + to.Ident()
	}
	if _, err := tx.Exec(ctx, empty); err != nil {
		return fmt.Errorf("empty the replica's table: %w", err)
	}
	for _, s := range rt.drop {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}

	format := ""
	if binaryFormat {
		format = " (FORMAT binary)"
	}
	out := "COPY " + t.Ident() + " (" + ti.outCols + ") TO STDOUT" + format
	if ti.partitioned || ti.filter != "" || len(ti.transforms) > 0 {
		from := "ONLY " + t.Ident()
		if ti.partitioned {
			from = t.Ident()
		}
		where := ""
		if ti.filter != "" {
			where = " WHERE (" + ti.filter + ")"
		}
		out = "COPY (SELECT " + ti.proj.SelectList(ti.transforms, false) + " FROM " + from + where + ") TO STDOUT" + format
	}
	in := "COPY " + to.Ident() + " (" + ti.inCols + ") FROM STDIN" + format

	meter := &meter{counter: newRowCounter(binaryFormat), start: start, p: p, report: w.c.progress}
	pipe := newChunkPipe()
	done := make(chan error, 1)
	go func() {
		_, err := w.origin.PgConn().CopyTo(ctx, io.MultiWriter(pipe, meter), out)
		pipe.CloseWrite(err)
		done <- err
	}()
	tag, err := w.replica.PgConn().CopyFrom(ctx, pipe, in)
	pipe.CloseRead(errCopyInEnded) // unblocks the sender if COPY FROM stopped early
	outErr := <-done
	if outErr != nil && !errors.Is(outErr, errCopyInEnded) {
		return fmt.Errorf("read from the origin: %w", outErr)
	}
	if err != nil {
		return fmt.Errorf("write to the replica: %w", err)
	}

	for _, s := range rt.rebuild {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if err := w.copySequences(ctx, tx, ti); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state, snapshot, rule, updated_at)
VALUES ($1, $2, $3, 'catchup', $4, nullif($5, ''), now())
    ON CONFLICT (set_name, schema_name, table_name)
    DO UPDATE SET state = 'catchup', snapshot = EXCLUDED.snapshot, rule = EXCLUDED.rule, updated_at = now()`,
		w.c.cfg.Name, to.Schema, to.Name, snap, ti.ruleHash)
	if err != nil {
		return fmt.Errorf("record the copy's snapshot: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	p.Rows, p.Bytes, p.Done, p.Took = tag.RowsAffected(), meter.bytes, true, time.Since(start)
	w.c.progress(p)
	return nil
}

var errCopyInEnded = errors.New("the replica's COPY ended")

// copySequences sets the replica's sequences owned by the table's columns
// (serial, identity) to the origin's current values, so that a replica
// promoted to origin does not hand out used values.
func (w *worker) copySequences(ctx context.Context, tx pgx.Tx, ti *tableInfo) error {
	seqs, err := OwnedSequences(ctx, w.otx, ti.table)
	if err != nil {
		return err
	}
	for _, s := range seqs {
		i := slices.Index(ti.proj.Origin, s.Column)
		if i < 0 {
			continue // not sent to this replica
		}
		s.Column = ti.proj.Replica[i]
		if err := SetSequence(ctx, tx, ti.target, s); err != nil {
			return err
		}
	}
	return nil
}

// meter counts what passes on its way to the replica and reports progress
// at most every progressEvery.
type meter struct {
	counter *rowCounter
	bytes   int64
	writes  int
	start   time.Time
	last    time.Time
	p       Progress
	report  func(Progress)
}

const progressEvery = 500 * time.Millisecond

func (m *meter) Write(b []byte) (int, error) {
	m.bytes += int64(len(b))
	m.counter.feed(b)
	m.writes++
	if m.writes%512 == 0 {
		if now := time.Now(); now.Sub(m.last) >= progressEvery {
			m.last = now
			p := m.p
			p.Rows, p.Bytes, p.Took = m.counter.rows, m.bytes, now.Sub(m.start)
			m.report(p)
		}
	}
	return len(b), nil
}

// applyRule sets what the replica's rule for the table copies: the
// projection, the filter that install checked and compiled into capture
// (the copy and the stream select the same rows), and the rule's hash. A
// rule changed in the config since install is refused: the stream still
// follows the installed one.
func (c *copier) applyRule(ctx context.Context, q pgx.Tx, ti *tableInfo) error {
	t := ti.table
	tr := rule.Of(c.replica, t)
	ti.rule, ti.target = tr, rule.Target(tr, t)
	installed, err := rule.Installed(ctx, q, c.replica.Name, t)
	if err != nil {
		return err
	}
	if want := tr.Hash(); want != installed {
		return fmt.Errorf("replica %s: the rule for %s in the config is not the one installed on the origin: run pgreplica install first, then sync it", c.replica.Name, t)
	}
	cols, key, err := rule.Columns(ctx, q, t)
	if err != nil {
		return err
	}
	p := rule.Project(tr, cols, key)
	ti.proj = p
	ti.outCols, ti.inCols = quoteNames(p.Origin), quoteNames(p.Replica)
	ti.ruleHash = installed
	if tr != nil && len(tr.Transform) > 0 {
		if ti.transforms, err = rule.Transforms(ctx, q, c.replica.Name, t); err != nil {
			return err
		}
	}
	if tr != nil && tr.Filtered() {
		if ti.filter, err = rule.Filter(ctx, q, c.replica.Name, t); err != nil {
			return err
		}
		if ti.filter == "" {
			return fmt.Errorf("replica %s: no filter for %s is installed on the origin: run pgreplica install first", c.replica.Name, t)
		}
	}
	return nil
}

func quoteNames(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(quoted, ", ")
}
