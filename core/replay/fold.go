package replay

import (
	"strings"

	"pgreplica/core/pg"
)

// The fold. The fast path applies a batch as net changes: a batch commits
// atomically, so the changes it holds for one row can be folded into one
// (insert then updates = one insert; updates = one update of the union of
// the changed columns; ... then delete = one delete). The fold is pure
// (foldBatch: events in, segments of net changes and barriers out); fast.go
// plans and applies its result set-based: deletes and updates as one
// statement per table and column set, inserts as one INSERT per column set
// (COPY beyond maxInsertRows). Anything unusual (a key that changes, a
// TRUNCATE) is a barrier: what came before is applied first, the event
// itself exactly. Any error rolls back to the savepoint pgreplica_fast (the
// batch's transaction goes on) and the batch is replayed event by event
// (applyExactIn), which names the failing event.

// netKind is the net effect of a batch on one row.
type netKind int

const (
	netInsert  netKind = iota // the row is new: insert data
	netUpdate                 // the row changed: update data's columns
	netDelete                 // the row is gone
	netReplace                // deleted, then inserted anew: delete, insert data
	netNone                   // inserted, then deleted: nothing to do
)

// rowChange is one row's net change within a segment.
type rowChange struct {
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
	rows    map[string]*rowChange
	order   []*rowChange
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
		tn = &tableNet{table: e.Table, keyCols: keyCols[e.Table], rows: map[string]*rowChange{}}
		s.tables[e.Table] = tn
		s.order = append(s.order, e.Table)
	}
	e.parse()
	key, data := e.key, e.data
	if e.Op == 'I' {
		if tn.keyCols == nil {
			// No update or delete of this table in the batch: no row can be
			// changed twice, every insert stands alone.
			tn.order = append(tn.order, &rowChange{kind: netInsert, data: data, first: e, last: e})
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
		n = &rowChange{key: key, first: e}
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

// foldStep is a segment of folded events and the barrier that ends it.
type foldStep struct {
	seg    *segment
	folded []*event // the events folded into seg, in order
	// barrier is applied exactly after seg: an event that cannot be folded,
	// or the tables one TRUNCATE empties together; nil for the last step.
	barrier []*event
}

// keyColumns returns the key columns of each table, from any update or
// delete of it in events (an insert carries no key).
func keyColumns(events []*event) map[pg.Table][]string {
	keyCols := map[pg.Table][]string{}
	for _, e := range events {
		if (e.Op == 'U' || e.Op == 'D') && keyCols[e.Table] == nil {
			e.parse()
			keyCols[e.Table] = e.key.keys()
		}
	}
	return keyCols
}

// foldBatch folds the events of a batch (in their order) into segments of
// net changes separated by barriers. A barrier is an event that cannot be
// folded (a key that changes, a row changed in a way exact replay must
// judge), a TRUNCATE (with the TRUNCATEs of the same statement), or
// anything but an insert, update or delete (a script or sequence sample,
// which applyWithScripts keeps out of the fold anyway). It is pure: it
// needs neither a connection nor table metadata.
func foldBatch(events []*event) []foldStep {
	keyCols := keyColumns(events)
	var steps []foldStep
	cur := foldStep{seg: newSegment()}
	for i := 0; i < len(events); i++ {
		e := events[i]
		if (e.Op == 'I' || e.Op == 'U' || e.Op == 'D') && cur.seg.fold(e, keyCols) {
			cur.folded = append(cur.folded, e)
			continue
		}
		j := i + 1
		if e.Op == 'T' {
			for j < len(events) && events[j].Op == 'T' && events[j].Txid == e.Txid && events[j].ID == events[j-1].ID+1 {
				j++
			}
		}
		cur.barrier = events[i:j]
		steps = append(steps, cur)
		cur = foldStep{seg: newSegment()}
		i = j - 1
	}
	return append(steps, cur)
}

func newSegment() *segment { return &segment{tables: map[pg.Table]*tableNet{}} }
