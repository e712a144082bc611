// Package verify compares replicas with the origin, table by table, at one
// consistent point while writes go on, and repairs the rows that differ.
//
// The point: replay.Aligned locks the replica's position row (a running
// engine waits), takes an origin snapshot S in a REPEATABLE READ
// transaction, and applies on the replica, in a transaction of its own,
// exactly the events between the replica's position and S. Inside that
// pair of transactions the origin shows S and the replica shows S applied,
// whatever is being written meanwhile, so every difference found is real.
//
// The comparison: per table, each server computes a row count and a sum of
// 64-bit hashes of its rows (of the row's text, made with the same session
// settings on both sides: hashtextextended when both servers compute it
// alike, else the first 64 bits of md5) for the whole table, and only where they differ
// for primary-key ranges, narrowing down by splitting a differing range
// into Fanout ranges of about equal rows, until a range has at most
// LeafRows rows; only then are that range's keys and row hashes pulled and
// compared to name the missing, extra and different rows. An equal table
// costs one scan on each server (run in parallel), and no row crosses the
// network.
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/copystate"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/rule"
)

// Options select what Run compares. The zero value compares every captured
// table on every replica.
type Options struct {
	Replica string     // "" = every replica
	Tables  []pg.Table // nil = every selected table with capture installed
	Repair  bool       // make the replica's differing rows equal to the origin's
	// MaxKeys is how many differing keys are listed per table (default
	// 1000). Beyond it the counts are lower bounds and a repair refuses the
	// table (re-copy it with sync instead).
	MaxKeys  int
	LeafRows int // narrow differing ranges down to this many rows (default 1000)
	Fanout   int // ranges a differing range is split into (default 16)
	// PortableHash hashes rows with md5 even when both servers compute the
	// faster hashtextextended alike (it is used only then).
	PortableHash bool
	// OnTable is called after each table, from Run's goroutine.
	OnTable func(replica string, r TableResult)
}

// Result is the outcome of a Run.
type Result struct {
	Replicas []ReplicaResult
	Equal    bool // every compared table of every replica was equal
}

// Resolved reports whether every replica is now equal to the origin: equal
// as found, or repaired.
func (r Result) Resolved() bool {
	for _, rr := range r.Replicas {
		if !rr.Resolved() {
			return false
		}
	}
	return true
}

// ReplicaResult is one replica compared at one origin snapshot.
type ReplicaResult struct {
	Name   string
	At     replay.Snapshot // the origin snapshot both sides showed
	Tables []TableResult
	Equal  bool
	Took   time.Duration
}

// Resolved reports whether every table is equal or was repaired.
func (r ReplicaResult) Resolved() bool {
	for _, t := range r.Tables {
		if !t.Resolved() {
			return false
		}
	}
	return true
}

// TableResult is one table compared.
type TableResult struct {
	Table       pg.Table
	Equal       bool
	OriginRows  int64
	ReplicaRows int64
	// The differing keys, at most MaxKeys in all, sorted.
	Missing, Extra, Different []Key
	// How many rows are missing on the replica, extra there, or different;
	// lower bounds when Truncated.
	MissingCount, ExtraCount, DifferentCount int64
	Truncated                                bool   // more differences than listed
	Skipped                                  string // why the table was not compared; "" when it was
	Repaired                                 *Repaired
	Took                                     time.Duration
}

// Resolved reports whether the table is equal or was repaired.
func (t TableResult) Resolved() bool { return t.Equal || t.Repaired != nil }

// Repaired is what a repair changed on the replica.
type Repaired struct {
	Deleted, Inserted, Updated int64
}

// Key is a row's primary key.
type Key struct {
	Columns []string // key column names
	Values  []string // their text forms
	JSON    string   // {"column": value, ...} as the server's jsonb prints it
}

// String is the key as PostgreSQL's messages show one: (a, b)=(1, x).
func (k Key) String() string {
	return "(" + strings.Join(k.Columns, ", ") + ")=(" + strings.Join(k.Values, ", ") + ")"
}

func (k Key) id() string { return strings.Join(k.Values, "\x00") }

// Run compares each replica with the origin at one consistent point per
// replica (see the package documentation) and, with Repair, fixes the
// differing rows in the same replica transaction. An error means the
// comparison could not be made; differences are in the Result.
func Run(ctx context.Context, cfg *config.Config, opt Options) (Result, error) {
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = 1000
	}
	if opt.LeafRows <= 0 {
		opt.LeafRows = 1000
	}
	if opt.Fanout < 2 {
		opt.Fanout = 16
	}
	if err := cfg.RequireReplicas(); err != nil {
		return Result{}, err
	}
	if cfg.MultiMaster() {
		return runPairs(ctx, cfg, opt)
	}
	replicas := cfg.Connected()
	if len(replicas) == 0 {
		return Result{}, fmt.Errorf("every replica of set %s is a file replica: verify compares over connections; run it where both databases can be reached (--origin and --replica)", cfg.Name)
	}
	if opt.Replica != "" {
		r, err := cfg.Replica(opt.Replica)
		if err != nil {
			return Result{}, err
		}
		replicas = []config.Replica{r}
	}
	tables, err := selectTables(ctx, cfg, opt.Tables)
	if err != nil {
		return Result{}, err
	}
	res := Result{Equal: true}
	for _, r := range replicas {
		rr, err := verifyReplica(ctx, cfg, r, tables, opt)
		if err != nil {
			return res, err
		}
		res.Replicas = append(res.Replicas, rr)
		res.Equal = res.Equal && rr.Equal
	}
	return res, nil
}

// runPairs compares every pair of nodes of a multi-master set once, the
// first (as the origin) with the second at the point the first's stream
// reached there; each pair's result is named "a->b". opt.Replica, when
// set, names one pair.
func runPairs(ctx context.Context, cfg *config.Config, opt Options) (Result, error) {
	res := Result{Equal: true}
	var labels []string
	found := false
	onTable := opt.OnTable
	for _, p := range cfg.Pairs() {
		label := config.DirectionLabel(p.Source, p.Replicas[0].Name)
		labels = append(labels, label)
		if opt.Replica != "" && opt.Replica != label {
			continue
		}
		found = true
		po := opt
		po.Replica = ""
		if onTable != nil {
			po.OnTable = func(_ string, t TableResult) { onTable(label, t) }
		}
		r, err := Run(ctx, p, po)
		if err != nil {
			return res, fmt.Errorf("nodes %s and %s: %w", p.Source, p.Replicas[0].Name, err)
		}
		for _, rr := range r.Replicas {
			rr.Name = label
			res.Replicas = append(res.Replicas, rr)
		}
		res.Equal = res.Equal && r.Equal
	}
	if !found {
		return res, fmt.Errorf("unknown pair %q (known: %s)", opt.Replica, strings.Join(labels, ", "))
	}
	return res, nil
}

// selectTables is the named tables (each must exist on the origin with a
// primary key) or the selected tables whose capture is installed.
func selectTables(ctx context.Context, cfg *config.Config, names []pg.Table) ([]pg.Table, error) {
	conn, err := pg.ConnectOrigin(ctx, cfg, "verify "+cfg.Name)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if names == nil {
		all, err := capture.ListTables(ctx, conn, cfg.Tables.Match)
		if err != nil {
			return nil, fmt.Errorf("origin: %w", err)
		}
		var out []pg.Table
		for _, t := range all {
			if t.Status == capture.Installed || t.Status == capture.Disabled {
				out = append(out, t.Table)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no table to verify: capture is installed on no selected table of the origin")
		}
		return out, nil
	}
	all, err := capture.ListTables(ctx, conn, nil)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	keyed := map[pg.Table]bool{}
	for _, t := range all {
		keyed[t.Table] = t.Key != nil
	}
	var out []pg.Table
	var problems []error
	for _, t := range names {
		has, ok := keyed[t]
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("origin has no table %s", t))
		case !has:
			problems = append(problems, fmt.Errorf("%s has no primary key on the origin: it cannot be verified", t))
		case !slices.Contains(out, t):
			out = append(out, t)
		}
	}
	return out, errors.Join(problems...)
}

// sessionSettings make every value's text form the same on both servers.
var sessionSettings = pg.ExactTextSQL(true, pg.Setting{Name: "lc_monetary", Value: "C"},
	pg.Setting{Name: "search_path", Value: ""}, pg.Setting{Name: "statement_timeout", Value: "0"})

func verifyReplica(ctx context.Context, cfg *config.Config, r config.Replica, tables []pg.Table, opt Options) (ReplicaResult, error) {
	rr := ReplicaResult{Name: r.Name, Equal: true}
	start := time.Now()
	err := replay.Aligned(ctx, cfg, r.Name, func(ctx context.Context, otx, rtx pgx.Tx, at replay.Snapshot, _ string) error {
		rr.At = at
		for _, tx := range []pgx.Tx{otx, rtx} {
			if _, err := tx.Exec(ctx, sessionSettings); err != nil {
				return fmt.Errorf("set session: %w", err)
			}
		}
		fast := false
		if !opt.PortableHash {
			var err error
			if fast, err = sameFastHash(ctx, otx, rtx); err != nil {
				return fmt.Errorf("replica %s: %w", r.Name, err)
			}
		}
		states, err := copystate.Read(ctx, rtx, cfg.Name)
		if err != nil {
			return fmt.Errorf("replica %s: %w", r.Name, err)
		}
		for _, t := range tables {
			tstart := time.Now()
			var tr TableResult
			if st := states[rule.Target(rule.Of(r, t), t)]; st.Syncing() {
				tr = TableResult{Table: t, Skipped: "being copied by pgreplica sync (state " + string(st) + "); verify it once it replicates"}
			} else {
				c := &comparison{opt: opt, res: TableResult{Table: t}, fastHash: fast, rule: rule.Of(r, t)}
				if err := c.loadRule(ctx, otx, r.Name); err != nil {
					return fmt.Errorf("replica %s: compare %s: %w", r.Name, t, err)
				}
				if err := c.run(ctx, otx, rtx); err != nil {
					return fmt.Errorf("replica %s: compare %s: %w", r.Name, t, err)
				}
				tr = c.res
				if opt.Repair && !tr.Equal && tr.Skipped == "" && !tr.Truncated {
					rep, err := c.repair(ctx, otx, rtx)
					if err != nil {
						return fmt.Errorf("replica %s: repair %s: %w", r.Name, t, err)
					}
					tr.Repaired = &rep
				}
			}
			tr.Took = time.Since(tstart)
			rr.Equal = rr.Equal && tr.Equal
			rr.Tables = append(rr.Tables, tr)
			if opt.OnTable != nil {
				opt.OnTable(r.Name, tr)
			}
		}
		return nil
	})
	rr.Took = time.Since(start)
	return rr, err
}

// hashProbes are texts of several lengths, ASCII and not, to tell whether
// two servers' hashtextextended agree (it differs between big- and
// little-endian machines).
var hashProbes = []string{"", "a", "pgreplica", "pgreplica verify probe 1234567890", "ünïcødé ✓ 日本語 " + strings.Repeat("xyz", 50)}

func sameFastHash(ctx context.Context, otx, rtx pgx.Tx) (bool, error) {
	var got [2]string
	for i, tx := range []pgx.Tx{otx, rtx} {
		err := tx.QueryRow(ctx, `SELECT string_agg(hashtextextended(p, 0)::text, ',' ORDER BY n)
		                           FROM unnest($1::text[]) WITH ORDINALITY AS x(p, n)`, hashProbes).Scan(&got[i])
		if err != nil {
			return false, fmt.Errorf("probe hash function: %w", err)
		}
	}
	return got[0] == got[1], nil
}

// both runs f for the origin and the replica side at the same time.
func both(o, r *side, f func(*side) error) error {
	var wg sync.WaitGroup
	var errO error
	wg.Go(func() { errO = f(o) })
	errR := f(r)
	wg.Wait()
	return errors.Join(errO, errR)
}

// compareKeys orders keys by their values, numerically where both are
// integers.
func compareKeys(a, b Key) int {
	for i := range min(len(a.Values), len(b.Values)) {
		x, y := a.Values[i], b.Values[i]
		if x == y {
			continue
		}
		xi, errX := strconv.ParseInt(x, 10, 64)
		yi, errY := strconv.ParseInt(y, 10, 64)
		if errX == nil && errY == nil {
			if xi < yi {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	}
	return len(a.Values) - len(b.Values)
}
