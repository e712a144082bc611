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
)

// minFastBatch is the smallest batch worth the fast path: its statements
// are pipelined like the exact path's, and folding already pays at two
// events (a TPC-B transaction's three updates become set-based updates of
// three tables, which stay three statements however many transactions the
// batch holds).
const minFastBatch = 2

// fast reports whether a batch of n events is applied set-based.
func (a *applier) fast(n int) bool {
	// Multi-master: each event is resolved against its row's version, one
	// at a time (the set-based path would not see conflicts).
	return a.mm == nil && n > 0 && (a.mode == ApplyFast || (a.mode == ApplyAuto && !a.inOrder && n >= minFastBatch))
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
	rows []*rowChange
}

// maxInsertRows is the most rows inserted by one pipelined INSERT; more
// go by COPY.
const maxInsertRows = 200

// planFast folds events into net changes (foldBatch) and returns the steps
// that apply them. It sends nothing (it may load table metadata).
func (a *applier) planFast(ctx context.Context, events []*event) ([]op, error) {
	var ops []op
	for _, st := range foldBatch(events) {
		for _, e := range st.folded {
			if _, err := a.tableMeta(ctx, e.Table, e.ID); err != nil {
				return nil, err
			}
		}
		if len(st.barrier) > 0 {
			if _, err := a.tableMeta(ctx, st.barrier[0].Table, st.barrier[0].ID); err != nil {
				return nil, err
			}
		}
		o, err := a.planSegment(st.seg)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
		if len(st.barrier) > 0 {
			// A barrier: what came before is applied first, then these
			// events exactly.
			ops = append(ops, op{exact: st.barrier})
		}
	}
	return ops, nil
}

// planSegment returns the steps of a folded segment: deletes, then
// updates, then inserts, each table in the order it was first changed.
func (a *applier) planSegment(s *segment) ([]op, error) {
	var ops []op
	for _, t := range s.order {
		tn := s.tables[t]
		var dels []*rowChange
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

// groupByColumns returns the rows of the given kinds grouped by the
// columns of their data, groups in order of first appearance.
func groupByColumns(rows []*rowChange, kinds ...netKind) [][]*rowChange {
	index := map[string]int{}
	var groups [][]*rowChange
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

// applySetBased applies events folded and set-based inside the savepoint
// pgreplica_fast, which the caller has made; if that fails for any reason
// the savepoint is rolled back and the events are replayed one by one,
// which either succeeds or names the event that fails.
func (a *applier) applySetBased(ctx context.Context, tx session, events []*event) ([]Conflict, error) {
	conflicts, err := a.applyFast(ctx, tx, events)
	if err == nil {
		return conflicts, nil
	}
	return a.fallBack(ctx, tx, events, err)
}

// fallBack follows a set-based apply of events that failed with err inside
// the savepoint pgreplica_fast: the savepoint is rolled back and the events
// are replayed one by one in the same transaction (ApplyFast refuses).
func (a *applier) fallBack(ctx context.Context, tx session, events []*event, err error) ([]Conflict, error) {
	if a.mode == ApplyFast {
		return nil, fmt.Errorf("fast apply: %w", err)
	}
	if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT pgreplica_fast"); rbErr != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	a.fallbacks++
	a.lastFallback = err
	return a.applyExactIn(ctx, tx, events)
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
func (a *applier) copyInsert(ctx context.Context, tx session, tn *tableNet, rows []*rowChange) error {
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
