package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// nodeSequence is a selected table's sequence on one node.
type nodeSequence struct {
	name            string // schema.name as the operator reads it
	increment       int64
	min, max, start int64
	last            *int64 // nil when never used
	nextValue       int64  // the value it gives next
}

func (s nodeSequence) next() int64 { return s.nextValue }

// readNodeSequences lists the sequences of the tables that cfg selects on
// one node: owned by a column (serial, identity) or used by a default.
func readNodeSequences(ctx context.Context, conn *pgx.Conn, cfg *config.Config) (map[string]nodeSequence, error) {
	tables, err := ListTables(ctx, conn, cfg.Tables.Match)
	if err != nil {
		return nil, err
	}
	var idents []string
	for _, t := range tables {
		if t.Status != NoKey {
			idents = append(idents, t.Table.Ident())
		}
	}
	rows, err := conn.Query(ctx, `
SELECT DISTINCT format('%I.%I', n.nspname, s.relname), q.seqincrement, q.seqmin, q.seqmax, q.seqstart,
       CASE WHEN has_sequence_privilege(s.oid, 'SELECT') THEN pg_sequence_last_value(s.oid) END
  FROM unnest($1::text[]) AS x(t)
  JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass(x.t) AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_sequence q ON q.seqrelid = s.oid
UNION
SELECT format('%I.%I', n.nspname, s.relname), q.seqincrement, q.seqmin, q.seqmax, q.seqstart,
       CASE WHEN has_sequence_privilege(s.oid, 'SELECT') THEN pg_sequence_last_value(s.oid) END
  FROM unnest($1::text[]) AS x(t)
  JOIN pg_attrdef ad ON ad.adrelid = to_regclass(x.t)
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_sequence q ON q.seqrelid = s.oid`, idents)
	if err != nil {
		return nil, fmt.Errorf("read sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (nodeSequence, error) {
		var q nodeSequence
		return q, r.Scan(&q.name, &q.increment, &q.min, &q.max, &q.start, &q.last)
	})
	if err != nil {
		return nil, fmt.Errorf("read sequences: %w", err)
	}
	out := map[string]nodeSequence{}
	for _, q := range seqs {
		// The value it gives next: last_value, or one step past it once
		// called (pg_sequence_last_value hides a RESTART's value).
		var last int64
		var called bool
		if err := conn.QueryRow(ctx, "SELECT last_value, is_called FROM "+q.name).Scan(&last, &called); err != nil {
			return nil, fmt.Errorf("read sequence %s: %w", q.name, err)
		}
		q.nextValue = last
		if called {
			q.nextValue = last + q.increment
		}
		out[q.name] = q
	}
	return out, nil
}

// sequencesCollide reports why two nodes' copies of one sequence could
// give the same value, or "" when they cannot: their ranges do not
// overlap, or both step by the same increment of at least the number of
// nodes from different offsets.
func sequencesCollide(a, b nodeSequence, nodes int) string {
	if a.max < b.min || b.max < a.min {
		return ""
	}
	if a.increment == b.increment && abs(a.increment) >= int64(nodes) && mod(a.next(), a.increment) != mod(b.next(), b.increment) {
		return ""
	}
	if a.increment == b.increment {
		return fmt.Sprintf("both step by %d from offset %d", a.increment, mod(a.next(), a.increment))
	}
	return fmt.Sprintf("they step by %d and %d over overlapping ranges", a.increment, b.increment)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func mod(x, m int64) int64 {
	m = abs(m)
	if m == 0 {
		return 0
	}
	return ((x % m) + m) % m
}

// CheckNodeSequences makes sure the nodes of a multi-master set cannot
// draw the same value from the sequences of the replicated tables (each
// node draws from its own copy). A collision risk is an error naming the
// sequence; with fix, the sequences at risk are set instead to step by
// the number of nodes, each node from its own offset, starting past every
// node's last value (ALTER SEQUENCE ... INCREMENT BY n RESTART WITH ...),
// and each change is reported.
func CheckNodeSequences(ctx context.Context, cfg *config.Config, fix bool, report Report) error {
	conns := make([]*pgx.Conn, len(cfg.Nodes))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	seqs := make([]map[string]nodeSequence, len(cfg.Nodes))
	for i, n := range cfg.Nodes {
		c, err := pg.ConnectAs(ctx, "node "+n.Name, n.DSN, pg.AppName("install"))
		if err != nil {
			return err
		}
		conns[i] = c
		if seqs[i], err = readNodeSequences(ctx, c, cfg); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	var risky []string
	var problems []string
	var names []string
	for name := range seqs[0] {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for i := range cfg.Nodes {
			for j := i + 1; j < len(cfg.Nodes); j++ {
				a, okA := seqs[i][name]
				b, okB := seqs[j][name]
				if !okA || !okB {
					continue
				}
				if why := sequencesCollide(a, b, len(cfg.Nodes)); why != "" {
					problems = append(problems, fmt.Sprintf("sequence %s can give the same value on nodes %s and %s: %s", name, cfg.Nodes[i].Name, cfg.Nodes[j].Name, why))
					if len(risky) == 0 || risky[len(risky)-1] != name {
						risky = append(risky, name)
					}
				}
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	if !fix {
		return fmt.Errorf("%s; nothing was installed; give each node its own values (distinct ranges, or INCREMENT BY %d with an offset per node), or let install set them: pgreplica install --yes",
			strings.Join(problems, "; "), len(cfg.Nodes))
	}
	k := int64(len(cfg.Nodes))
	for _, name := range risky {
		var high int64
		for i := range cfg.Nodes {
			if s, ok := seqs[i][name]; ok && s.next() > high {
				high = s.next()
			}
		}
		base := (high/k + 1) * k
		for i, n := range cfg.Nodes {
			if _, ok := seqs[i][name]; !ok {
				continue
			}
			start := base + int64(i)
			if _, err := conns[i].Exec(ctx, fmt.Sprintf("ALTER SEQUENCE %s INCREMENT BY %d RESTART WITH %d", name, k, start)); err != nil {
				return fmt.Errorf("node %s: set sequence %s: %w", n.Name, name, err)
			}
			report(fmt.Sprintf("node %s: sequence %s now gives %d, %d, %d...", n.Name, name, start, start+k, start+2*k))
		}
	}
	return nil
}
