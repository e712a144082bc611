package bundle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/tablecopy"
	pgsql "pgreplica/sql"
)

// ImportOptions say how Import applies bundles.
type ImportOptions struct {
	// Set, when not empty, is the set the bundles must be of (the config's).
	Set        string
	Identities []age.Identity // decrypt encrypted bundles
	// AckDir, when not empty, is where an acknowledgement file is written
	// after the last bundle: the replica's new position, for pgreplica ack.
	AckDir string
	// BatchEvents is how many events go to the server at once inside a
	// bundle's transaction (default 5000).
	BatchEvents int
	// Report receives one line per bundle applied or skipped.
	Report func(string)
}

// ImportResult is what Import did.
type ImportResult struct {
	Applied []Header
	Skipped []Header
	Ack     *Written // the acknowledgement file written, with AckDir
}

// RefusedError is a bundle that does not fit the replica: of another set
// or replica, or out of sequence. Nothing was changed.
type RefusedError struct{ msg string }

func (e *RefusedError) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &RefusedError{msg: fmt.Sprintf(format, args...) + "; nothing was applied"}
}

type bundleFile struct {
	path   string
	header Header
	sha    string
}

// Import applies bundles to the replica at dsn, each exactly once, in one
// replica transaction together with the replica's position, in sequence
// order (the files may be given in any order). Every file is read and its
// checksum checked before anything is applied: a damaged file, a bundle of
// another set, or a gap in the sequence is refused and nothing is changed.
// A bundle applied already is skipped.
func Import(ctx context.Context, dsn string, paths []string, opt ImportOptions) (ImportResult, error) {
	var res ImportResult
	if opt.BatchEvents <= 0 {
		opt.BatchEvents = 5000
	}
	if opt.Report == nil {
		opt.Report = func(string) {}
	}
	if len(paths) == 0 {
		return res, errors.New("no bundle to import")
	}
	files := make([]bundleFile, 0, len(paths))
	for _, p := range paths {
		r, err := Open(p, opt.Identities)
		if err != nil {
			return res, err
		}
		err = r.Verify()
		sha := r.sha()
		h := r.Header
		r.Close()
		if err != nil {
			return res, err
		}
		if h.Kind == KindAck {
			return res, refuse("%s is an acknowledgement, not a bundle: give it to pgreplica ack on the origin", p)
		}
		if h.Kind != KindBase && h.Kind != KindEvents {
			return res, &DamagedError{Path: p, Err: fmt.Errorf("unknown kind %q", h.Kind)}
		}
		if opt.Set != "" && h.Set != opt.Set {
			return res, refuse("%s is %s, but this config's set is %s", p, h.Describe(), opt.Set)
		}
		files = append(files, bundleFile{path: p, header: h, sha: sha})
	}
	for _, f := range files[1:] {
		if f.header.Set != files[0].header.Set {
			return res, refuse("%s and %s are bundles of different sets (%s, %s): import each set's bundles separately",
				files[0].path, f.path, files[0].header.Set, f.header.Set)
		}
	}
	slices.SortStableFunc(files, func(a, b bundleFile) int { return cmp.Compare(a.header.Seq, b.header.Seq) })

	set := files[0].header.Set
	conn, err := pg.ConnectAs(ctx, "replica", dsn, "pgreplica import "+set)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := replay.PrepareApplySession(ctx, conn, set); err != nil {
		return res, fmt.Errorf("replica: %w", err)
	}
	if _, err := conn.Exec(ctx, tablecopy.ReplicaSettings); err != nil {
		return res, fmt.Errorf("replica: %w", err)
	}
	im := &importer{conn: conn, opt: opt, apply: nil}
	var lastApplied *Header
	for _, f := range files {
		applied, err := im.one(ctx, f)
		if err != nil {
			return res, err
		}
		h := f.header
		if applied {
			res.Applied = append(res.Applied, h)
			lastApplied = &h
		} else {
			res.Skipped = append(res.Skipped, h)
		}
	}
	if opt.AckDir != "" {
		h := files[len(files)-1].header
		if lastApplied != nil {
			h = *lastApplied
		}
		w, err := writeAck(ctx, conn, opt.AckDir, h)
		if err != nil {
			return res, err
		}
		res.Ack = &w
	}
	return res, nil
}

type importer struct {
	conn  *pgx.Conn
	opt   ImportOptions
	apply *replay.Applier
}

// applied is the replica's record of the last bundle applied for a set.
type applied struct {
	seq     int64
	replica string
	at      time.Time
}

// one applies one bundle in one transaction, or skips it (false) when it
// was applied already.
func (im *importer) one(ctx context.Context, f bundleFile) (bool, error) {
	h := f.header
	tx, err := im.conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("replica: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := ensureReplicaSchema(ctx, tx); err != nil {
		return false, err
	}
	// One import of a set at a time.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "pgreplica import "+h.Set); err != nil {
		return false, fmt.Errorf("replica: take the import lock: %w", err)
	}
	var last applied
	err = tx.QueryRow(ctx, `SELECT seq, replica, applied_at FROM pgreplica.bundle_import
	                         WHERE set_name = $1 ORDER BY seq DESC LIMIT 1`, h.Set).Scan(&last.seq, &last.replica, &last.at)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("replica: read the bundles applied: %w", err)
	}
	if h.Seq <= last.seq {
		var sha string
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT sha256, applied_at FROM pgreplica.bundle_import WHERE set_name = $1 AND seq = $2`,
			h.Set, h.Seq).Scan(&sha, &at)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			im.opt.Report(fmt.Sprintf("%s: skipped, older than bundle %d, the last applied here", h.Describe(), last.seq))
			return false, nil
		case err != nil:
			return false, fmt.Errorf("replica: read the bundles applied: %w", err)
		case sha != f.sha:
			return false, refuse("%s: a different bundle %d of set %s was applied here on %s (checksum %.12s, this file %.12s): this file was not exported for this replica",
				f.path, h.Seq, h.Set, at.UTC().Format(time.RFC3339), sha, f.sha)
		}
		im.opt.Report(fmt.Sprintf("%s: applied already on %s; skipped", h.Describe(), at.UTC().Format(time.RFC3339)))
		return false, nil
	}
	if last.seq == 0 {
		var other *string
		if err := tx.QueryRow(ctx, `SELECT min(set_name) FROM pgreplica.bundle_import WHERE set_name <> $1`, h.Set).Scan(&other); err != nil {
			return false, fmt.Errorf("replica: read the bundles applied: %w", err)
		}
		if other != nil {
			return false, refuse("%s is %s, but this database receives set %s: wrong file?", f.path, h.Describe(), *other)
		}
	}
	if last.seq > 0 && h.Replica != last.replica {
		return false, refuse("%s is %s, but this database applies the bundles of replica %s", f.path, h.Describe(), last.replica)
	}
	if h.Kind == KindEvents {
		if err := im.checkStart(ctx, tx, f, last); err != nil {
			return false, err
		}
	}
	start := time.Now()
	r, err := Open(f.path, im.opt.Identities)
	if err != nil {
		return false, err
	}
	defer r.Close()
	if h.Kind == KindBase {
		err = im.base(ctx, tx, r)
	} else {
		err = im.events(ctx, tx, r)
	}
	if err != nil {
		return false, err
	}
	if r.sha() != f.sha {
		return false, &DamagedError{Path: f.path, Err: errors.New("the file changed while it was imported")}
	}
	_, err = tx.Exec(ctx, `INSERT INTO pgreplica.bundle_import (set_name, seq, replica, kind, to_snapshot, to_target, to_last_id,
	                                                            events, sha256, created_at)
	                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		h.Set, h.Seq, h.Replica, h.Kind, h.To.Snapshot.String(), nullSnap(h.To.Target), h.To.LastID, h.Events, f.sha, h.CreatedAt)
	if err != nil {
		return false, fmt.Errorf("replica: record %s: %w", h.Describe(), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("replica: commit %s: %w", h.Describe(), err)
	}
	what := fmt.Sprintf("%d events", h.Events)
	if h.Kind == KindBase {
		what = fmt.Sprintf("%d tables, %d rows", h.Tables, h.Rows)
	}
	im.opt.Report(fmt.Sprintf("%s: applied (%s in %s)", h.Describe(), what, time.Since(start).Round(time.Millisecond)))
	return true, nil
}

// checkStart refuses an events bundle that does not start where the
// replica stands: a gap, another set, a replica moved by something else.
func (im *importer) checkStart(ctx context.Context, tx pgx.Tx, f bundleFile, last applied) error {
	h := f.header
	if last.seq > 0 && h.Seq > last.seq+1 {
		return refuse("%s is %s, which does not follow bundle %d, the last applied here: import bundle %d first",
			f.path, h.Describe(), last.seq, last.seq+1)
	}
	pos, err := replay.ReadPosition(ctx, tx, h.Set)
	if errors.Is(err, replay.ErrNoPosition) {
		return refuse("%s is %s, but this database has no position for set %s: import the set's base bundle first (pgreplica export --base)",
			f.path, h.Describe(), h.Set)
	}
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if at := PointOf(pos); !at.Equal(h.From) {
		if last.seq == 0 {
			return refuse("%s is %s, which starts at %s, but the replica stands at %s: import the bundles before it, or start from a base bundle",
				f.path, h.Describe(), h.From, at)
		}
		return refuse("%s is %s, which starts at %s, but the replica stands at %s (after bundle %d): something else changed its position",
			f.path, h.Describe(), h.From, at, last.seq)
	}
	return nil
}

// events applies an events bundle with the engine's applier, batch by
// batch, in tx: the position moves with each batch and ends at the
// bundle's end.
func (im *importer) events(ctx context.Context, tx pgx.Tx, r *Reader) error {
	h := r.Header
	if im.apply == nil {
		im.apply = replay.NewApplier(im.conn, h.Set, h.Replica)
	}
	// Inside the bundle the position is that of an interval being applied
	// (towards its target, after the last event applied).
	target := h.From.Target
	if target.IsZero() {
		target = h.To.Target
	}
	if target.IsZero() {
		target = h.To.Snapshot
	}
	cur := h.From.Position()
	var batch []replay.Change
	var count int64
	flush := func(final bool) error {
		next := replay.Position{Snapshot: h.From.Snapshot, Target: target}
		if len(batch) > 0 {
			next.LastID = batch[len(batch)-1].ID
		}
		if final {
			next = h.To.Position()
		}
		if _, err := im.apply.ApplyIn(ctx, tx, cur, next, batch); err != nil {
			if errors.Is(err, replay.ErrPositionMoved) {
				return fmt.Errorf("replica: %s: the replica's position moved while it was applied (another pgreplica applying there?): %w", h.Describe(), err)
			}
			return fmt.Errorf("replica: %s: %w", h.Describe(), err)
		}
		cur, batch = next, batch[:0]
		return nil
	}
	for {
		it, err := r.nextItem()
		if err != nil {
			return err
		}
		if it.event == nil {
			if it.table != nil {
				return &DamagedError{Path: r.Path, Err: errors.New("a table in an events bundle")}
			}
			break
		}
		batch = append(batch, *it.event)
		count++
		if len(batch) >= im.opt.BatchEvents {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	if count != h.Events {
		return &DamagedError{Path: r.Path, Err: fmt.Errorf("%d events, the header says %d", count, h.Events)}
	}
	return flush(true)
}

// ensureReplicaSchema installs the replica's bookkeeping (sql/replica.sql)
// and the bundle record when missing, in tx.
func ensureReplicaSchema(ctx context.Context, tx pgx.Tx) error {
	var position, imports bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('pgreplica.position') IS NOT NULL,
	                                   to_regclass('pgreplica.bundle_import') IS NOT NULL`).Scan(&position, &imports); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	if !position {
		if _, err := tx.Exec(ctx, pgsql.Replica); err != nil {
			return fmt.Errorf("replica: install bookkeeping schema: %w", err)
		}
	}
	if !imports {
		if _, err := tx.Exec(ctx, pgsql.BundleReplica); err != nil {
			return fmt.Errorf("replica: create pgreplica.bundle_import: %w", err)
		}
	}
	return nil
}

// emptyTables empties every table of a base bundle, in one TRUNCATE so
// that foreign keys between them do not refuse it, or, where another table
// of the replica references one of them, with DELETE, referencing tables
// first.
func emptyTables(ctx context.Context, tx pgx.Tx, h Header) error {
	if len(h.Contents) == 0 {
		return nil
	}
	type target struct {
		t           pg.Table
		partitioned bool
	}
	var ts []target
	for _, c := range h.Contents {
		t := pg.Table{Schema: c[0], Name: c[1]}
		var partitioned bool
		err := tx.QueryRow(ctx, `SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)`, t.Ident()).Scan(&partitioned)
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse("replica lacks table %s of %s: create the set's tables there first (pg_dump --schema-only on the origin, psql on the replica)", t, h.Describe())
		}
		if err != nil {
			return fmt.Errorf("replica: read table %s: %w", t, err)
		}
		ts = append(ts, target{t, partitioned})
	}
	names := make([]string, len(ts))
	for i, x := range ts {
		names[i] = x.t.Ident()
		if !x.partitioned {
			names[i] = "ONLY " + names[i]
		}
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT pgreplica_empty"); err != nil {
		return fmt.Errorf("replica: savepoint: %w", err)
	}
	_, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", "))
	if err == nil {
		return nil
	}
	if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pgreplica_empty"); rbErr != nil {
		return fmt.Errorf("replica: empty the tables: %w", err)
	}
	for i := len(names) - 1; i >= 0; i-- {
		if _, err := tx.Exec(ctx, "DELETE FROM "+names[i]); err != nil {
			return fmt.Errorf("replica: empty %s: %w", ts[i].t, err)
		}
	}
	return nil
}

// base loads a base bundle in tx: every table's rows replaced by the
// copy's, the sequences set, and the position set to the copy's snapshot.
func (im *importer) base(ctx context.Context, tx pgx.Tx, r *Reader) error {
	h := r.Header
	if err := emptyTables(ctx, tx, h); err != nil {
		return err
	}
	var rows int64
	tables := 0
	for {
		it, err := r.nextItem()
		if err != nil {
			return err
		}
		if it.event != nil {
			return &DamagedError{Path: r.Path, Err: errors.New("an event in a base bundle")}
		}
		if it.table == nil {
			break
		}
		rec := it.table
		t := pg.Table{Schema: rec.Schema, Name: rec.Name}
		if tables >= len(h.Contents) || h.Contents[tables] != [2]string{t.Schema, t.Name} {
			return &DamagedError{Path: r.Path, Err: fmt.Errorf("table %s is not the header's table %d", t, tables+1)}
		}
		tag, err := tx.Conn().PgConn().CopyFrom(ctx, r.rows(), "COPY "+t.Ident()+" ("+quoteAll(rec.Columns)+") FROM STDIN")
		if err != nil {
			var de *DamagedError
			if errors.As(err, &de) {
				return de
			}
			return fmt.Errorf("replica: load %s: %w", t, err)
		}
		rows += tag.RowsAffected()
		tables++
		for _, s := range rec.Sequences {
			if err := tablecopy.SetSequence(ctx, tx, t, tablecopy.Sequence{Column: s.Column, Value: s.Value}); err != nil {
				return fmt.Errorf("replica: %s: %w", t, err)
			}
		}
	}
	if int64(tables) != int64(h.Tables) || rows != h.Rows {
		return &DamagedError{Path: r.Path, Err: fmt.Errorf("%d tables and %d rows, the header says %d and %d", tables, rows, h.Tables, h.Rows)}
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO pgreplica.position (set_name, snapshot) VALUES ($1, $2)
	         ON CONFLICT (set_name) DO UPDATE SET snapshot = EXCLUDED.snapshot, target = NULL, last_id = NULL, applied_at = now()`,
		h.Set, h.To.Snapshot.String())
	b.Queue(`DELETE FROM pgreplica.table_state WHERE set_name = $1`, h.Set)
	b.Queue(`DELETE FROM pgreplica.held WHERE set_name = $1`, h.Set)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("replica: set position: %w", err)
	}
	return nil
}
