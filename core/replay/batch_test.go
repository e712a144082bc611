package replay

import (
	"fmt"
	"testing"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// cut is what the worker and Aligned do with each event read.
func cut(events []*event, limits config.Batch) [][]int64 {
	var out [][]int64
	var cur batch
	flush := func() {
		var ids []int64
		for _, e := range cur.events {
			ids = append(ids, e.ID)
		}
		out = append(out, ids)
		cur = batch{}
	}
	for _, e := range events {
		if cur.full(e, limits) {
			flush()
		}
		cur.add(e)
	}
	flush()
	return out
}

func TestBatchCut(t *testing.T) {
	tb := pg.Table{Schema: "s", Name: "t"} // size: 48 + names (2) + key + data
	sized := func(id int64, data int) *event {
		return &event{ID: id, Table: tb, Op: 'I', Data: make([]byte, data)}
	}
	events := []*event{sized(1, 50), sized(2, 50), sized(3, 50), sized(4, 400), sized(5, 10)}
	tests := []struct {
		name   string
		limits config.Batch
		want   string
	}{
		{"max_events", config.Batch{MaxEvents: 2, MaxBytes: 1 << 20}, "[[1 2] [3 4] [5]]"},
		{"max_bytes", config.Batch{MaxEvents: 100, MaxBytes: 250}, "[[1 2] [3] [4] [5]]"},
		{"an event bigger than max_bytes goes alone", config.Batch{MaxEvents: 100, MaxBytes: 10}, "[[1] [2] [3] [4] [5]]"},
		{"both", config.Batch{MaxEvents: 3, MaxBytes: 300}, "[[1 2 3] [4] [5]]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(cut(events, tc.limits)); got != tc.want {
				t.Errorf("batches: got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBatchNext(t *testing.T) {
	from := Position{Snapshot: Snapshot{Xmin: 10, Xmax: 12, Xip: []uint64{11}}, LastID: 4}
	to := Snapshot{Xmin: 20, Xmax: 20}
	b := batch{target: to}
	b.add(&event{ID: 7})
	b.add(&event{ID: 9})
	if got := b.next(from); got.Snapshot.String() != "10:12:11" || got.Target.String() != "20:20:" || got.LastID != 9 {
		t.Errorf("inside the interval: got %+v, want snapshot %s, target %s, last id 9", got, from.Snapshot, to)
	}
	b.final = true
	if got := b.next(from); got.Snapshot.String() != "20:20:" || !got.Target.IsZero() || got.LastID != 0 {
		t.Errorf("final: got %+v, want snapshot %s only", got, to)
	}
}
