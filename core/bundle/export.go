package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/tablecopy"
	pgsql "pgreplica/sql"
)

// DefaultMaxBytes is where a bundle is cut when no limit is given: about
// this much content before compression.
const DefaultMaxBytes = 64 << 20

// ExportOptions say what Export writes.
type ExportOptions struct {
	Replica    string          // the file replica
	Dir        string          // where the bundles go ("" = the current directory)
	MaxBytes   int64           // cut bundles at about this much content; 0 = DefaultMaxBytes
	Base       bool            // first write a base bundle: a copy of every selected table
	Recipients []age.Recipient // encrypt the bundles to these
	// OnBundle is called after each bundle is written and recorded.
	OnBundle func(Written)
}

// Export writes the events after the replica's last exported position into
// bundle files, each recorded on the origin (pgreplica.bundle_export) once
// complete. It finishes an interval that an earlier export cut at MaxBytes,
// then exports the interval up to the origin's current snapshot; with Base
// it first writes a copy of every selected table at one snapshot, the
// bundle a new file replica starts from. It returns the bundles written
// (none when nothing new was committed).
func Export(ctx context.Context, cfg *config.Config, opt ExportOptions) ([]Written, error) {
	r, err := cfg.FileReplica(opt.Replica)
	if err != nil {
		return nil, err
	}
	if opt.Dir == "" {
		opt.Dir = "."
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if st, err := os.Stat(opt.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("export directory %s: not a directory", opt.Dir)
	}
	if opt.OnBundle == nil {
		opt.OnBundle = func(Written) {}
	}
	app := "pgreplica export " + cfg.Name + "/" + r.Name
	book, err := pg.ConnectAs(ctx, "origin", cfg.Origin.DSN, app)
	if err != nil {
		return nil, err
	}
	defer book.Close(context.WithoutCancel(ctx))
	read, err := pg.ConnectAs(ctx, "origin", cfg.Origin.DSN, app)
	if err != nil {
		return nil, err
	}
	defer read.Close(context.WithoutCancel(ctx))
	// A big interval is sorted by id before its first event streams.
	if _, err := read.Exec(ctx, "SET work_mem = '64MB'"); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	ex := &exporter{cfg: cfg, replica: r, opt: opt, book: book, read: read}
	if err := ex.prepare(ctx); err != nil {
		return nil, err
	}
	// Released here rather than when the server notices the closed
	// connection, so that an export right after this one finds it free.
	defer book.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", exportLockKey(cfg, r))
	if opt.Base {
		if err := ex.base(ctx); err != nil {
			return ex.written, err
		}
	} else if !ex.found {
		return nil, fmt.Errorf("file replica %s has no bundle yet and no position on the origin: start it with pgreplica export --base --replica %s", r.Name, r.Name)
	}
	if !ex.last.Target.IsZero() {
		if err := ex.interval(ctx, ex.last.Target); err != nil {
			return ex.written, err
		}
	}
	to, err := replay.CurrentSnapshot(ctx, read)
	if err != nil {
		return ex.written, err
	}
	if !ex.last.Snapshot.Covers(to) {
		if err := ex.interval(ctx, to); err != nil {
			return ex.written, err
		}
	}
	return ex.written, nil
}

type exporter struct {
	cfg     *config.Config
	replica config.Replica
	opt     ExportOptions
	book    *pgx.Conn // bookkeeping: the lock, the records
	read    *pgx.Conn // streams events and copies tables

	version string // of the capture schema
	found   bool   // last is known
	last    Point  // where the next bundle starts
	seq     int64  // the last bundle's sequence number
	written []Written
}

// exportLockKey names the advisory lock that lets one export at a time
// work for a replica.
func exportLockKey(cfg *config.Config, r config.Replica) string {
	return "pgreplica export " + cfg.Name + "/" + r.Name
}

// prepare checks the origin, creates the bookkeeping table when missing,
// takes the export lock and reads where the last export ended.
func (ex *exporter) prepare(ctx context.Context) error {
	v, err := capture.SchemaVersion(ctx, ex.book)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if v == "" {
		return errors.New("pgreplica is not installed on the origin; run pgreplica install")
	}
	ex.version = v
	var exists bool
	if err := ex.book.QueryRow(ctx, "SELECT to_regclass('pgreplica.bundle_export') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if !exists {
		if _, err := ex.book.Exec(ctx, pgsql.BundleOrigin); err != nil {
			return fmt.Errorf("origin: create pgreplica.bundle_export: %w", err)
		}
	}
	var locked bool
	if err := ex.book.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
		exportLockKey(ex.cfg, ex.replica)).Scan(&locked); err != nil {
		return fmt.Errorf("origin: take the export lock: %w", err)
	}
	if !locked {
		return fmt.Errorf("another pgreplica export for replica %s of set %s is running; wait for it to end", ex.replica.Name, ex.cfg.Name)
	}
	var to string
	var target *string
	err = ex.book.QueryRow(ctx, `SELECT seq, to_snapshot, to_target, to_last_id FROM pgreplica.bundle_export
	                              WHERE set_name = $1 AND replica = $2 ORDER BY seq DESC LIMIT 1`,
		ex.cfg.Name, ex.replica.Name).Scan(&ex.seq, &to, &target, &ex.last.LastID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// No bundle yet: start where the origin registered the replica
		// (install registers every replica, file replicas too).
		var snap string
		err := ex.book.QueryRow(ctx, `SELECT snapshot::text FROM pgreplica.replica WHERE name = $1`, ex.replica.Name).Scan(&snap)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("origin: read position of %s: %w", ex.replica.Name, err)
		}
		if ex.last.Snapshot, err = replay.ParseSnapshot(snap); err != nil {
			return err
		}
		ex.found = true
		return nil
	case err != nil:
		return fmt.Errorf("origin: read the last bundle of %s: %w", ex.replica.Name, err)
	}
	ex.found = true
	if ex.last.Snapshot, err = replay.ParseSnapshot(to); err != nil {
		return err
	}
	if target != nil {
		if ex.last.Target, err = replay.ParseSnapshot(*target); err != nil {
			return err
		}
	}
	return nil
}

// interval exports the events of the interval from ex.last to target, cut
// into bundles of about MaxBytes, with the engine's reader.
func (ex *exporter) interval(ctx context.Context, target replay.Snapshot) error {
	from := ex.last
	b, err := newBody(ex.opt.Dir)
	if err != nil {
		return err
	}
	defer func() { b.discard() }()
	var n, lastID int64
	flush := func(to Point) error {
		h := ex.header(KindEvents, ex.last, to)
		h.Events = n
		if err := ex.finish(ctx, b, h); err != nil {
			return err
		}
		n = 0
		b, err = newBody(ex.opt.Dir)
		return err
	}
	err = replay.ReadChanges(ctx, ex.read, from.Snapshot, target, from.LastID, func(c replay.Change) error {
		if n > 0 && b.size() >= ex.opt.MaxBytes {
			// Full, and c follows: cut the interval after lastID.
			if err := flush(Point{Snapshot: from.Snapshot, Target: target, LastID: lastID}); err != nil {
				return err
			}
		}
		n++
		lastID = c.ID
		return b.event(c)
	})
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	if n == 0 {
		return nil
	}
	return flush(Point{Snapshot: target})
}

func (ex *exporter) header(kind string, from, to Point) Header {
	return Header{Format: FormatVersion, Kind: kind, Set: ex.cfg.Name, Replica: ex.replica.Name, Seq: ex.seq + 1,
		From: from, To: to, CaptureVersion: ex.version, CreatedAt: time.Now().UTC()}
}

// finish writes the bundle file and records it on the origin; the next
// bundle starts where it ends.
func (ex *exporter) finish(ctx context.Context, b *body, h Header) error {
	w, err := b.finish(ex.opt.Dir, h, ex.opt.Recipients)
	if err != nil {
		return err
	}
	_, err = ex.book.Exec(ctx, `
INSERT INTO pgreplica.bundle_export (set_name, replica, seq, kind, from_snapshot, from_target, from_last_id,
                                     to_snapshot, to_target, to_last_id, events, bytes, sha256, file)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		h.Set, h.Replica, h.Seq, h.Kind, nullSnap(h.From.Snapshot), nullSnap(h.From.Target), h.From.LastID,
		h.To.Snapshot.String(), nullSnap(h.To.Target), h.To.LastID, h.Events, w.Bytes, w.SHA256, filepath.Base(w.Path))
	if err != nil {
		os.Remove(w.Path)
		return fmt.Errorf("origin: record %s: %w", h.Describe(), err)
	}
	ex.seq, ex.last, ex.found = h.Seq, h.To, true
	ex.written = append(ex.written, w)
	ex.opt.OnBundle(w)
	return nil
}

func nullSnap(s replay.Snapshot) any {
	if s.IsZero() {
		return nil
	}
	return s.String()
}

// base writes a consistent copy of every selected table, at one origin
// snapshot, as the bundle a new file replica starts from. Every selected
// table must have its capture trigger: what is committed after the
// snapshot reaches the replica in the next bundles.
func (ex *exporter) base(ctx context.Context) error {
	// Registered before the snapshot is taken, the replica holds the purge
	// back from the start.
	if _, err := ex.book.Exec(ctx, `INSERT INTO pgreplica.replica (name, snapshot) VALUES ($1, pg_current_snapshot())
	                                 ON CONFLICT (name) DO NOTHING`, ex.replica.Name); err != nil {
		return fmt.Errorf("origin: register replica %s: %w", ex.replica.Name, err)
	}
	if _, err := ex.read.Exec(ctx, tablecopy.OriginSettings); err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	tx, err := ex.read.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("origin: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var snap replay.Snapshot
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return fmt.Errorf("origin: take snapshot: %w", err)
	}
	infos, err := capture.ListTables(ctx, tx, ex.cfg.Tables.Match)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	var tables []pg.Table
	for _, ti := range infos {
		switch ti.Status {
		case capture.Installed:
			tables = append(tables, ti.Table)
		case capture.NoKey:
			// not replicated (pgreplica tables reports it)
		default:
			return fmt.Errorf("table %s is selected but its capture trigger is %s: its changes after the copy would be lost; run pgreplica install first", ti.Table, ti.Status)
		}
	}
	if tables, err = parentsFirst(ctx, tx, tables); err != nil {
		return err
	}
	b, err := newBody(ex.opt.Dir)
	if err != nil {
		return err
	}
	defer b.discard()
	var rows int64
	for _, t := range tables {
		cols, partitioned, err := tablecopy.CopyColumns(ctx, tx, t)
		if err != nil {
			return err
		}
		seqs, err := tablecopy.OwnedSequences(ctx, tx, t)
		if err != nil {
			return err
		}
		rec := tableRecord{Schema: t.Schema, Name: t.Name, Columns: cols}
		for _, s := range seqs {
			rec.Sequences = append(rec.Sequences, Sequence{Column: s.Column, Value: s.Value})
		}
		if err := b.table(rec); err != nil {
			return fmt.Errorf("write base bundle: %w", err)
		}
		out := "COPY " + t.Ident() + " (" + quoteAll(cols) + ") TO STDOUT"
		if partitioned {
			out = "COPY (SELECT " + quoteAll(cols) + " FROM " + t.Ident() + ") TO STDOUT"
		}
		tag, err := ex.read.PgConn().CopyTo(ctx, b, out)
		if err != nil {
			return fmt.Errorf("origin: copy %s: %w", t, err)
		}
		rows += tag.RowsAffected()
		if _, err := b.Write(copyEnd); err != nil {
			return fmt.Errorf("write base bundle: %w", err)
		}
	}
	h := ex.header(KindBase, Point{}, Point{Snapshot: snap})
	h.Tables, h.Rows = len(tables), rows
	for _, t := range tables {
		h.Contents = append(h.Contents, [2]string{t.Schema, t.Name})
	}
	return ex.finish(ctx, b, h)
}

// parentsFirst orders tables so that a table referenced by a foreign key
// of another comes before it: loaded in this order, the rows satisfy the
// keys at every step.
func parentsFirst(ctx context.Context, tx pgx.Tx, tables []pg.Table) ([]pg.Table, error) {
	rows, err := tx.Query(ctx, `
SELECT cn.nspname, c.relname, pn.nspname, p.relname
  FROM pg_constraint f
  JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE f.contype = 'f' AND f.conrelid <> f.confrelid`)
	if err != nil {
		return nil, fmt.Errorf("origin: read foreign keys: %w", err)
	}
	parents := map[pg.Table][]pg.Table{}
	for rows.Next() {
		var c, p pg.Table
		if err := rows.Scan(&c.Schema, &c.Name, &p.Schema, &p.Name); err != nil {
			return nil, fmt.Errorf("origin: read foreign keys: %w", err)
		}
		parents[c] = append(parents[c], p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("origin: read foreign keys: %w", err)
	}
	selected := map[pg.Table]bool{}
	for _, t := range tables {
		selected[t] = true
	}
	out := make([]pg.Table, 0, len(tables))
	state := map[pg.Table]int{} // 1 visiting, 2 done
	var visit func(t pg.Table)
	visit = func(t pg.Table) {
		if state[t] != 0 {
			return // done, or a cycle: its order does not matter more
		}
		state[t] = 1
		for _, p := range parents[t] {
			if selected[p] {
				visit(p)
			}
		}
		state[t] = 2
		out = append(out, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return out, nil
}

func quoteAll(cols []string) string {
	var s string
	for i, c := range cols {
		if i > 0 {
			s += ", "
		}
		s += pgx.Identifier{c}.Sanitize()
	}
	return s
}

// compile-time check that body is a writer for CopyTo.
var _ io.Writer = (*body)(nil)
