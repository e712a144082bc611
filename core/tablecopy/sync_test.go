package tablecopy_test

import (
	"strings"
	"sync"
	"testing"

	"pgreplica/core/pg"
	"pgreplica/core/tablecopy"
)

const oddTable = `"Odd Schema"."Order ""Items"""`

var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

// progressLog collects progress reports.
type progressLog struct {
	mu   sync.Mutex
	all  []tablecopy.Progress
	done map[pg.Table]tablecopy.Progress
}

func (p *progressLog) add(x tablecopy.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = append(p.all, x)
	if x.Done {
		if p.done == nil {
			p.done = map[pg.Table]tablecopy.Progress{}
		}
		p.done[x.Table] = x
	}
}

func TestSyncSchemaKindsToEmptyReplica(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, kindsSchema)
	exec(t, e.origin, kindsRows(300))
	var lines []string
	var prog progressLog
	err := tablecopy.Sync(e.ctx, e.cfg, tablecopy.Options{Schema: true, Report: func(l string) { lines = append(lines, l) }}, prog.add)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	t.Logf("report:\n%s", strings.Join(lines, "\n"))
	e.once()
	e.requireEqual("kinds", "composite_key", oddTable)
	if len(prog.done) != 3 {
		t.Fatalf("done reports for %d tables, want 3", len(prog.done))
	}
	if d := prog.done[pg.Table{Schema: "public", Name: "kinds"}]; d.Rows != 300 {
		t.Fatalf("kinds: reported %d rows, want 300", d.Rows)
	}
	// The replica's generated column is computed there, the sequence follows the origin.
	if g := queryInt(t, e.replica, "SELECT sum(g) FROM kinds"); g != queryInt(t, e.origin, "SELECT sum(id * 10) FROM kinds") {
		t.Fatalf("generated column sum %d", g)
	}
	if v := queryInt(t, e.replica, "SELECT last_value FROM kinds_ser_seq"); v != 300 {
		t.Fatalf("replica's kinds_ser_seq at %d, want 300", v)
	}
}
