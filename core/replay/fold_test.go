package replay

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgreplica/core/pg"
)

// The fold is pure: these tests need no PostgreSQL (TestMain starts the
// shared clusters only on first use, which they never make).

var (
	foldA = pg.Table{Schema: "public", Name: "a"}
	foldB = pg.Table{Schema: "public", Name: "b"}
	foldC = pg.Table{Schema: "public", Name: "c"}
)

// ev builds the event of id n; key and data are JSON objects or "".
func ev(n int64, txid uint64, t pg.Table, op byte, key, data string) *event {
	e := &event{ID: n, Txid: txid, Table: t, Op: op}
	if key != "" {
		e.Key = []byte(key)
	}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

// describeFold renders the steps of foldBatch, one line per net change (in
// the order the segment keeps them: tables by first change, rows by first
// change) and one per barrier.
func describeFold(steps []foldStep) []string {
	kinds := map[netKind]string{netInsert: "insert", netUpdate: "update", netDelete: "delete", netReplace: "replace", netNone: "nothing"}
	var out []string
	for _, st := range steps {
		for _, t := range st.seg.order {
			for _, n := range st.seg.tables[t].order {
				line := fmt.Sprintf("%s %s", kinds[n.kind], t.Name)
				if n.key != nil {
					line += " key " + n.key.json()
				}
				if n.data != nil {
					line += " data " + n.data.json()
				}
				line += fmt.Sprintf(" events %d-%d", n.first.ID, n.last.ID)
				out = append(out, line)
			}
		}
		if st.barrier != nil {
			var ids []string
			for _, e := range st.barrier {
				ids = append(ids, fmt.Sprintf("%d %c %s", e.ID, e.Op, e.Table.Name))
			}
			out = append(out, "barrier "+strings.Join(ids, ", "))
		}
	}
	return out
}

func TestFold(t *testing.T) {
	tests := []struct {
		name   string
		events []*event
		want   []string
	}{
		{
			name: "insert then updates is one insert",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":1,"v":"a"}`),
				ev(2, 11, foldA, 'U', `{"id":1}`, `{"v":"b"}`),
				ev(3, 12, foldA, 'U', `{"id":1}`, `{"w":2}`),
			},
			want: []string{`insert a key {"id": 1} data {"id": 1, "v": "b", "w": 2} events 1-3`},
		},
		{
			name: "updates of a hot row are one update of the merged columns",
			events: []*event{
				ev(1, 10, foldA, 'U', `{"id":7}`, `{"v":1}`),
				ev(2, 11, foldA, 'U', `{"id":7}`, `{"w":"x"}`),
				ev(3, 12, foldA, 'U', `{"id":7}`, `{"v":3}`),
				ev(4, 13, foldA, 'U', `{"id":8}`, `{"v":4}`),
			},
			want: []string{
				`update a key {"id": 7} data {"v": 3, "w": "x"} events 1-3`,
				`update a key {"id": 8} data {"v": 4} events 4-4`,
			},
		},
		{
			name: "insert then delete is nothing",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":1,"v":"a"}`),
				ev(2, 10, foldA, 'U', `{"id":1}`, `{"v":"b"}`),
				ev(3, 11, foldA, 'D', `{"id":1}`, ""),
			},
			want: []string{`nothing a key {"id": 1} events 1-3`},
		},
		{
			name: "delete then insert of the same key is a replace",
			events: []*event{
				ev(1, 10, foldA, 'D', `{"id":1}`, ""),
				ev(2, 11, foldA, 'I', "", `{"id":1,"v":"new"}`),
				ev(3, 12, foldA, 'U', `{"id":1}`, `{"v":"newer"}`),
			},
			want: []string{`replace a key {"id": 1} data {"id": 1, "v": "newer"} events 1-3`},
		},
		{
			name: "update then delete is a delete",
			events: []*event{
				ev(1, 10, foldA, 'U', `{"id":1}`, `{"v":"b"}`),
				ev(2, 11, foldA, 'D', `{"id":1}`, ""),
			},
			want: []string{`delete a key {"id": 1} events 1-2`},
		},
		{
			name: "a key change is a barrier",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":5,"v":"a"}`),
				ev(2, 11, foldA, 'U', `{"id":1}`, `{"id":2}`),
				ev(3, 12, foldA, 'U', `{"id":5}`, `{"v":"b"}`),
			},
			want: []string{
				`insert a key {"id": 5} data {"id": 5, "v": "a"} events 1-1`,
				`barrier 2 U a`,
				`update a key {"id": 5} data {"v": "b"} events 3-3`,
			},
		},
		{
			name: "an update of a row deleted in the batch is a barrier",
			events: []*event{
				ev(1, 10, foldA, 'D', `{"id":1}`, ""),
				ev(2, 11, foldA, 'U', `{"id":1}`, `{"v":"b"}`),
			},
			want: []string{
				`delete a key {"id": 1} events 1-2`,
				`barrier 2 U a`,
			},
		},
		{
			name: "a TRUNCATE is a barrier, with the tables of the same statement",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":1}`),
				ev(2, 11, foldA, 'T', "", ""),
				ev(3, 11, foldB, 'T', "", ""),
				ev(4, 12, foldC, 'T', "", ""),
				ev(5, 13, foldA, 'I', "", `{"id":1}`),
			},
			want: []string{
				`insert a data {"id": 1} events 1-1`,
				`barrier 2 T a, 3 T b`,
				`barrier 4 T c`,
				`insert a data {"id": 1} events 5-5`,
			},
		},
		{
			name: "scripts and sequence samples are barriers",
			events: []*event{
				ev(1, 10, foldA, 'U', `{"id":1}`, `{"v":1}`),
				ev(2, 11, foldA, 'E', "", `{"sql":"ALTER TABLE a ADD w int"}`),
				ev(3, 12, foldA, 'U', `{"id":1}`, `{"w":2}`),
				ev(4, 13, foldB, 'Q', "", `{"s":1}`),
				ev(5, 14, foldA, 'U', `{"id":1}`, `{"v":3}`),
			},
			want: []string{
				`update a key {"id": 1} data {"v": 1} events 1-1`,
				`barrier 2 E a`,
				`update a key {"id": 1} data {"w": 2} events 3-3`,
				`barrier 4 Q b`,
				`update a key {"id": 1} data {"v": 3} events 5-5`,
			},
		},
		{
			name: "tables keep the order of their first change",
			events: []*event{
				ev(1, 10, foldB, 'U', `{"id":1}`, `{"v":1}`),
				ev(2, 11, foldA, 'I', "", `{"id":1}`),
				ev(3, 12, foldC, 'D', `{"id":9}`, ""),
				ev(4, 13, foldA, 'I', "", `{"id":2}`),
				ev(5, 14, foldB, 'U', `{"id":2}`, `{"v":2}`),
				ev(6, 15, foldB, 'U', `{"id":1}`, `{"v":3}`),
			},
			want: []string{
				`update b key {"id": 1} data {"v": 3} events 1-6`,
				`update b key {"id": 2} data {"v": 2} events 5-5`,
				`insert a data {"id": 1} events 2-2`,
				`insert a data {"id": 2} events 4-4`,
				`delete c key {"id": 9} events 3-3`,
			},
		},
		{
			name: "inserts of a table never updated nor deleted stand alone",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":1,"v":"a"}`),
				ev(2, 11, foldA, 'I', "", `{"id":1,"v":"b"}`),
			},
			want: []string{
				`insert a data {"id": 1, "v": "a"} events 1-1`,
				`insert a data {"id": 1, "v": "b"} events 2-2`,
			},
		},
		{
			name: "a second insert of a key the batch changes is a barrier",
			events: []*event{
				ev(1, 10, foldA, 'I', "", `{"id":1,"v":"a"}`),
				ev(2, 11, foldA, 'I', "", `{"id":1,"v":"b"}`),
				ev(3, 12, foldA, 'D', `{"id":1}`, ""),
			},
			want: []string{
				`insert a key {"id": 1} data {"id": 1, "v": "a"} events 1-2`,
				`barrier 2 I a`,
				`delete a key {"id": 1} events 3-3`,
			},
		},
		{
			name:   "an empty batch folds to one empty segment",
			events: nil,
			want:   nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps := foldBatch(tc.events)
			if len(steps) == 0 || steps[len(steps)-1].barrier != nil {
				t.Fatalf("the last step must be a segment without barrier, got %d steps", len(steps))
			}
			got := describeFold(steps)
			if !slices.Equal(got, tc.want) {
				t.Errorf("fold:\n got %q\nwant %q", got, tc.want)
			}
			// Every event is either folded or a barrier, once, in order.
			var seen []int64
			for _, st := range steps {
				for _, e := range st.folded {
					seen = append(seen, e.ID)
				}
				for _, e := range st.barrier {
					seen = append(seen, e.ID)
				}
			}
			for i, e := range tc.events {
				if i >= len(seen) || seen[i] != e.ID {
					t.Fatalf("events folded or barred: %v, want each of the batch once in order", seen)
				}
			}
			if len(seen) != len(tc.events) {
				t.Fatalf("events folded or barred: %v, want %d", seen, len(tc.events))
			}
		})
	}
}

func TestFoldKeyColumns(t *testing.T) {
	got := keyColumns([]*event{
		ev(1, 10, foldA, 'I', "", `{"id":1,"v":1}`),
		ev(2, 11, foldA, 'U', `{"tenant":1,"id":1}`, `{"v":2}`),
		ev(3, 12, foldB, 'D', `{"code":"x"}`, ""),
		ev(4, 13, foldB, 'D', `{"other":"y"}`, ""),
	})
	want := map[pg.Table][]string{foldA: {"tenant", "id"}, foldB: {"code"}}
	if len(got) != len(want) || !slices.Equal(got[foldA], want[foldA]) || !slices.Equal(got[foldB], want[foldB]) {
		t.Errorf("key columns: got %v, want %v", got, want)
	}
}
