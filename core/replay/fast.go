package replay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"

	"pgreplica/core/pg"
)

// The fast path applies a batch as net changes: a batch commits atomically,
// so the changes it holds for one row can be folded into one (insert then
// updates = one insert; updates = one update of the union of the changed
// columns; ... then delete = one delete). The net changes of a table are
// applied set-based: deletes and updates as one statement per table and
// column set, inserts with COPY. Anything unusual (a key that changes, a
// TRUNCATE) is a barrier: what came before is applied first, the event
// itself exactly. Any error rolls the transaction back and the batch is
// replayed event by event (applyExact), which names the failing event.

// minFastBatch is the smallest batch worth the fast path: its statements
// are pipelined like the exact path's, and folding already pays at two
// events (a TPC-B transaction's three updates become set-based updates of
// three tables, which stay three statements however many transactions the
// batch holds).
const minFastBatch = 2

// field is one "column": value of a row image, both as raw JSON text.
type field struct {
	key   string // the column name
	raw   string // the value's JSON text
	isStr bool
}

// image is a parsed row image (or key), in its JSON order.
type image []field

func parseImage(js []byte) image {
	var im image
	gjson.ParseBytes(js).ForEach(func(k, v gjson.Result) bool {
		im = append(im, field{key: k.Str, raw: v.Raw, isStr: v.Type == gjson.String})
		return true
	})
	return im
}

func (im image) get(key string) (field, bool) {
	for _, f := range im {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// merge sets the fields of later over im.
func (im image) merge(later image) image {
	out := slices.Clone(im)
	for _, f := range later {
		replaced := false
		for i := range out {
			if out[i].key == f.key {
				out[i], replaced = f, true
				break
			}
		}
		if !replaced {
			out = append(out, f)
		}
	}
	return out
}

// json writes the image back as a JSON object.
func (im image) json() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range im {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(jsonString(f.key))
		b.WriteString(": ")
		b.WriteString(f.raw)
	}
	b.WriteByte('}')
	return b.String()
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func (im image) keys() []string {
	ks := make([]string, len(im))
	for i, f := range im {
		ks[i] = f.key
	}
	return ks
}

// netKind is the net effect of a batch on one row.
type netKind int

const (
	netInsert  netKind = iota // the row is new: insert data
	netUpdate                 // the row changed: update data's columns
	netDelete                 // the row is gone
	netReplace                // deleted, then inserted anew: delete, insert data
	netNone                   // inserted, then deleted: nothing to do
)

// net is one row's net change within a segment.
type net struct {
	kind  netKind
	key   image // the row's key (for update, delete, replace)
	data  image // inserted row, or changed columns
	first *event
	last  *event
}

// tableNet is the net changes of one table, rows in order of first change.
type tableNet struct {
	table   pg.Table
	keyCols []string
	rows    map[string]*net
	order   []*net
}

// segment is the events between two barriers, folded.
type segment struct {
	tables map[pg.Table]*tableNet
	order  []pg.Table // tables in order of first change
}

func rowID(im image, keyCols []string) (string, bool) {
	var b strings.Builder
	for _, k := range keyCols {
		f, ok := im.get(k)
		if !ok {
			return "", false
		}
		b.WriteString(f.raw)
		b.WriteByte(0)
	}
	return b.String(), true
}

// fold adds an event to the segment. It returns false when the event can
// not be folded (it must be applied exactly, after the segment).
func (s *segment) fold(e *event, keyCols map[pg.Table][]string) bool {
	tn := s.tables[e.Table]
	if tn == nil {
		tn = &tableNet{table: e.Table, keyCols: keyCols[e.Table], rows: map[string]*net{}}
		s.tables[e.Table] = tn
		s.order = append(s.order, e.Table)
	}
	e.parse()
	key, data := e.key, e.data
	if e.Op == 'I' {
		if tn.keyCols == nil {
			// No update or delete of this table in the batch: no row can be
			// changed twice, every insert stands alone.
			tn.order = append(tn.order, &net{kind: netInsert, data: data, first: e, last: e})
			return true
		}
		key = make(image, 0, len(tn.keyCols))
		for _, k := range tn.keyCols {
			f, ok := data.get(k)
			if !ok {
				return false
			}
			key = append(key, f)
		}
	} else {
		if e.Op == 'U' {
			for _, f := range key {
				if _, changed := data.get(f.key); changed {
					return false // the key changes: exact
				}
			}
		}
	}
	id, ok := rowID(key, tn.keyCols)
	if !ok {
		return false
	}
	n := tn.rows[id]
	if n == nil {
		n = &net{key: key, first: e}
		switch e.Op {
		case 'I':
			n.kind, n.data = netInsert, data
		case 'U':
			n.kind, n.data = netUpdate, data
		case 'D':
			n.kind = netDelete
		}
		n.last = e
		tn.rows[id] = n
		tn.order = append(tn.order, n)
		return true
	}
	n.last = e
	switch {
	case e.Op == 'U' && (n.kind == netInsert || n.kind == netReplace || n.kind == netUpdate):
		n.data = n.data.merge(data)
	case e.Op == 'D' && n.kind == netInsert:
		n.kind, n.data = netNone, nil // inserted and deleted within the batch
	case e.Op == 'D' && (n.kind == netUpdate || n.kind == netReplace):
		n.kind, n.data = netDelete, nil
	case e.Op == 'I' && n.kind == netDelete:
		n.kind, n.data = netReplace, data
	case e.Op == 'I' && n.kind == netNone:
		n.kind, n.data = netInsert, data
	default:
		return false // e.g. insert of a row that exists: let exact replay report it
	}
	return true
}

// op is one step of a folded batch: a set-based statement, events applied
// one statement each (a barrier), or a COPY (which cannot be pipelined).
type op struct {
	set   *setStmt
	exact []*event
	copy  *copyOp
}

type copyOp struct {
	tn   *tableNet
	rows []*net
}

// maxInsertRows is the most rows inserted by one pipelined INSERT; more
// go by COPY.
const maxInsertRows = 200

// planFast folds events into net changes and returns the steps that apply
// them. It sends nothing (it may load table metadata).
func (a *applier) planFast(ctx context.Context, events []*event) ([]op, error) {
	// The key columns of each table, from any update or delete of it.
	keyCols := map[pg.Table][]string{}
	for _, e := range events {
		if (e.Op == 'U' || e.Op == 'D') && keyCols[e.Table] == nil {
			e.parse()
			keyCols[e.Table] = e.key.keys()
		}
	}
	var ops []op
	seg := &segment{tables: map[pg.Table]*tableNet{}}
	flush := func() error {
		o, err := a.planSegment(seg)
		ops = append(ops, o...)
		seg = &segment{tables: map[pg.Table]*tableNet{}}
		return err
	}
	for i := 0; i < len(events); i++ {
		e := events[i]
		if _, err := a.tableMeta(ctx, e.Table, e.ID); err != nil {
			return nil, err
		}
		if e.Op != 'T' && seg.fold(e, keyCols) {
			continue
		}
		// A barrier: apply what came before, then this event exactly.
		if err := flush(); err != nil {
			return nil, err
		}
		j := i + 1
		if e.Op == 'T' {
			for j < len(events) && events[j].Op == 'T' && events[j].Txid == e.Txid && events[j].ID == events[j-1].ID+1 {
				j++
			}
		}
		ops = append(ops, op{exact: events[i:j]})
		i = j - 1
	}
	return ops, flush()
}

// applyFast applies events as folded net changes inside tx. It returns
// the conflicts found, or an error (a database error, a missing column), after
// which the caller replays the batch exactly.
func (a *applier) applyFast(ctx context.Context, tx session, events []*event) ([]Conflict, error) {
	ops, err := a.planFast(ctx, events)
	if err != nil {
		return nil, err
	}
	return a.execOps(ctx, tx, &pipeline{}, ops)
}

// planSegment returns the steps of a folded segment: deletes, then
// updates, then inserts, each table in the order it was first changed.
func (a *applier) planSegment(s *segment) ([]op, error) {
	var ops []op
	for _, t := range s.order {
		tn := s.tables[t]
		var dels []*net
		for _, n := range tn.order {
			if n.kind == netDelete || n.kind == netReplace {
				dels = append(dels, n)
			}
		}
		if len(dels) > 0 {
			st, err := a.deleteStmt(tn, dels)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op{set: &st})
		}
	}
	for _, t := range s.order {
		tn := s.tables[t]
		for _, rows := range groupByColumns(tn.order, netUpdate) {
			st, err := a.updateStmt(tn, rows)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op{set: &st})
		}
	}
	for _, t := range s.order {
		tn := s.tables[t]
		for _, rows := range groupByColumns(tn.order, netInsert, netReplace) {
			if len(rows) > maxInsertRows {
				ops = append(ops, op{copy: &copyOp{tn, rows}})
				continue
			}
			st, err := a.insertStmt(tn, rows)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op{set: &st})
		}
	}
	return ops, nil
}

// pipeline is statements sent together, each with the function that reads
// its result.
type pipeline struct {
	b     pgx.Batch
	reads []func(pgx.BatchResults) error
}

func (p *pipeline) queue(read func(pgx.BatchResults) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.reads = append(p.reads, read)
}

// run sends the pipeline and reads every result in order; the first error
// ends it.
func (p *pipeline) run(ctx context.Context, tx session) error {
	if p.b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &p.b)
	for _, read := range p.reads {
		if err := read(br); err != nil {
			br.Close()
			return err
		}
	}
	return br.Close()
}

// execOps runs ops after what p already holds: every statement up to a
// COPY goes in one pipeline.
func (a *applier) execOps(ctx context.Context, tx session, p *pipeline, ops []op) ([]Conflict, error) {
	var conflicts []Conflict
	for _, o := range ops {
		switch {
		case o.copy != nil:
			if err := p.run(ctx, tx); err != nil {
				return nil, err
			}
			p = &pipeline{}
			if err := a.copyInsert(ctx, tx, o.copy.tn, o.copy.rows); err != nil {
				return nil, err
			}
		case o.set != nil:
			st := o.set
			if st.op == 'I' {
				p.queue(func(br pgx.BatchResults) error { _, err := br.Exec(); return err }, st.sql, st.arg)
				continue
			}
			p.queue(func(br pgx.BatchResults) error {
				c, err := readSet(br, st)
				conflicts = append(conflicts, c...)
				return err
			}, st.sql, st.arg)
		default:
			queued, err := a.queueExact(ctx, &p.b, o.exact)
			if err != nil {
				return nil, err
			}
			for _, e := range queued {
				p.reads = append(p.reads, func(br pgx.BatchResults) error {
					c, err := a.readExact(br, []*event{e})
					conflicts = append(conflicts, c...)
					return err
				})
			}
		}
	}
	if err := p.run(ctx, tx); err != nil {
		return nil, err
	}
	// Set-based steps run deletes before updates: report in event order.
	slices.SortStableFunc(conflicts, func(x, y Conflict) int { return cmpInt(x.EventID, y.EventID) })
	return conflicts, nil
}

// groupByColumns returns the rows of the given kinds grouped by the
// columns of their data, groups in order of first appearance.
func groupByColumns(rows []*net, kinds ...netKind) [][]*net {
	index := map[string]int{}
	var groups [][]*net
	for _, n := range rows {
		if !slices.Contains(kinds, n.kind) {
			continue
		}
		sig := strings.Join(n.data.keys(), "\x00")
		i, ok := index[sig]
		if !ok {
			i = len(groups)
			index[sig] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], n)
	}
	return groups
}

// setStmt is one set-based statement: it returns the ordinal (1-based) of
// each row of arg it touched.
type setStmt struct {
	sql  string
	arg  []string
	rows []*net
	op   byte
}

// deleteStmt deletes rows by key.
func (a *applier) deleteStmt(tn *tableNet, rows []*net) (setStmt, error) {
	m := a.meta[tn.table]
	if err := a.checkColumns(m, tn.table, tn.keyCols, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	keys := make([]string, len(rows))
	for i, n := range rows {
		keys[i] = n.key.json()
	}
	sql := fmt.Sprintf(`DELETE FROM %s AS t USING unnest($1::text[]) WITH ORDINALITY AS u(j, ord),
	                     jsonb_to_record(u.j::jsonb) AS %s WHERE %s RETURNING u.ord`,
		m.target, recordDef(m, "k", tn.keyCols), keyMatch(m, tn.keyCols))
	return setStmt{sql: sql, arg: keys, rows: rows, op: 'D'}, nil
}

// updateStmt updates rows with the same changed columns.
func (a *applier) updateStmt(tn *tableNet, rows []*net) (setStmt, error) {
	m := a.meta[tn.table]
	cols := rows[0].data.keys()
	all := append(slices.Clone(tn.keyCols), cols...)
	if err := a.checkColumns(m, tn.table, all, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	objs := make([]string, len(rows))
	for i, n := range rows {
		objs[i] = n.key.merge(n.data).json()
	}
	sets := make([]string, len(cols))
	for i, c := range cols {
		sets[i] = pgx.Identifier{c}.Sanitize() + " = " + value(m, "n", c)
	}
	match := strings.ReplaceAll(keyMatch(m, tn.keyCols), " = k.", " = n.")
	sql := fmt.Sprintf(`UPDATE %s AS t SET %s FROM unnest($1::text[]) WITH ORDINALITY AS u(j, ord),
	                     jsonb_to_record(u.j::jsonb) AS %s WHERE %s RETURNING u.ord`,
		m.target, strings.Join(sets, ", "), recordDef(m, "n", all), match)
	return setStmt{sql: sql, arg: objs, rows: rows, op: 'U'}, nil
}

// insertStmt inserts rows with the same columns in one statement.
func (a *applier) insertStmt(tn *tableNet, rows []*net) (setStmt, error) {
	m := a.meta[tn.table]
	cols := rows[0].data.keys()
	if err := a.checkColumns(m, tn.table, cols, rows[0].first.ID); err != nil {
		return setStmt{}, err
	}
	objs := make([]string, len(rows))
	for i, n := range rows {
		objs[i] = n.data.json()
	}
	sql := fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM unnest($1::text[]) AS u(j),
	                     jsonb_to_record(u.j::jsonb) AS %s`,
		tn.table.Ident(), idents(cols), values(m, "n", cols), recordDef(m, "n", cols))
	return setStmt{sql: sql, arg: objs, rows: rows, op: 'I'}, nil
}

// readSet reads the ordinals a set statement returned; the rows it did not
// touch are conflicts.
func readSet(br pgx.BatchResults, st *setStmt) ([]Conflict, error) {
	res, err := br.Query()
	if err != nil {
		return nil, err
	}
	hit := make([]bool, len(st.rows))
	for res.Next() {
		var ord int64
		if err := res.Scan(&ord); err != nil {
			res.Close()
			return nil, err
		}
		hit[ord-1] = true
	}
	res.Close()
	if err := res.Err(); err != nil {
		return nil, err
	}
	var out []Conflict
	for i, ok := range hit {
		if ok {
			continue
		}
		n := st.rows[i]
		kind, e := UpdateNoRow, n.last
		if st.op == 'D' {
			kind = DeleteNoRow
		}
		c := Conflict{EventID: e.ID, Txid: e.Txid, Table: e.Table, Op: string(st.op), Key: n.key.json(), Kind: kind, At: time.Now()}
		if st.op == 'U' {
			c.Data = n.data.json()
		}
		out = append(out, c)
	}
	return out, nil
}

// copyInsert inserts rows with COPY (text format, built from the JSON
// values: strings unescaped and COPY-escaped, other values as they are).
func (a *applier) copyInsert(ctx context.Context, tx session, tn *tableNet, rows []*net) error {
	m := a.meta[tn.table]
	cols := rows[0].data.keys()
	if err := a.checkColumns(m, tn.table, cols, rows[0].first.ID); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, n := range rows {
		for i, f := range n.data {
			if i > 0 {
				buf.WriteByte('\t')
			}
			switch {
			case f.raw == "null":
				buf.WriteString(`\N`)
			case f.isStr:
				copyEscape(&buf, gjson.Parse(f.raw).Str)
			default:
				copyEscape(&buf, f.raw)
			}
		}
		buf.WriteByte('\n')
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN", tn.table.Ident(), idents(cols))
	_, err := tx.Conn().PgConn().CopyFrom(ctx, io.Reader(&buf), sql)
	return err
}

func copyEscape(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
}

// checkColumns makes sure the replica table has every column, writable.
func (a *applier) checkColumns(m *tableMeta, t pg.Table, cols []string, eventID int64) error {
	for _, c := range cols {
		col, ok := m.cols[c]
		switch {
		case !ok:
			return stopTable(t, nil, "replica %s: table %s lacks column %s (event %d); its events are held there: add the column, then pgreplica retry --table %s (or pgreplica sync --table %s)", a.replica, t, pg.Name(c), eventID, t, t)
		case col.generated:
			return stop("replica %s: column %s of %s is generated there and cannot be written (event %d)", a.replica, pg.Name(c), t, eventID)
		}
	}
	return nil
}
