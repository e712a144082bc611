package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/rule"
)

// side is one server's view of the table being compared, in its
// transaction of the aligned pair.
type side struct {
	name     string // "origin" or "replica"
	tx       pgx.Tx
	from     string   // FROM clause: [ONLY] schema.table AS t
	table    string   // schema.table, quoted
	keyTypes []string // per key column, as the server names it
	keyExprs []string // per key column: t.col, with COLLATE "C" where the two servers' orders could differ
	colTypes map[string]string
	rowHash  string // a 64-bit hash of the row's text (bigint)
}

// keyTuple is the key as one comparable value.
func (s *side) keyTuple() string {
	if len(s.keyExprs) == 1 {
		return s.keyExprs[0]
	}
	return "(" + strings.Join(s.keyExprs, ", ") + ")"
}

// params collects query arguments.
type params struct{ args []any }

func (p *params) add(v any) string {
	p.args = append(p.args, v)
	return "$" + strconv.Itoa(len(p.args))
}

// tuple is a key value given as text, cast to the key's types.
func (s *side) tuple(p *params, vals []string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = p.add(v) + "::text::" + s.keyTypes[i]
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// where is the condition of a key range [lo, hi); nil is unbounded.
func (s *side) where(p *params, lo, hi []string) string {
	var c []string
	if lo != nil {
		c = append(c, s.keyTuple()+" >= "+s.tuple(p, lo))
	}
	if hi != nil {
		c = append(c, s.keyTuple()+" < "+s.tuple(p, hi))
	}
	if len(c) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c, " AND ")
}

func (s *side) hashExpr() string { return s.rowHash }

// hashCount is a range's row count and hash sum on one side.
type hashCount struct {
	n   int64
	sum string
}

// keyRange is a range of keys [lo, hi) with what each side holds in it.
type keyRange struct {
	lo, hi []string
	o, r   hashCount
}

func (k keyRange) differs() bool { return k.o != k.r }

func (s *side) hash(ctx context.Context, lo, hi []string) (hashCount, error) {
	var p params
	sql := "SELECT count(*), coalesce(sum(" + s.hashExpr() + "), 0)::text FROM " + s.from + s.where(&p, lo, hi)
	var h hashCount
	if err := s.tx.QueryRow(ctx, sql, p.args...).Scan(&h.n, &h.sum); err != nil {
		return h, fmt.Errorf("%s: hash rows: %w", s.name, err)
	}
	return h, nil
}

// bucketHashes hashes the sub-ranges of [lo, hi) cut at bounds, in one
// scan: bucket i is [bounds[i-1], bounds[i]).
func (s *side) bucketHashes(ctx context.Context, lo, hi []string, bounds [][]string) ([]hashCount, error) {
	var p params
	var cs strings.Builder
	cs.WriteString("CASE")
	for i, b := range bounds {
		fmt.Fprintf(&cs, " WHEN %s < %s THEN %d", s.keyTuple(), s.tuple(&p, b), i)
	}
	fmt.Fprintf(&cs, " ELSE %d END", len(bounds))
	sql := "SELECT b__, count(*), coalesce(sum(h__), 0)::text FROM (SELECT " + cs.String() + " AS b__, " + s.hashExpr() +
		" AS h__ FROM " + s.from + s.where(&p, lo, hi) + ") s GROUP BY b__"
	rows, err := s.tx.Query(ctx, sql, p.args...)
	if err != nil {
		return nil, fmt.Errorf("%s: hash key ranges: %w", s.name, err)
	}
	defer rows.Close()
	out := make([]hashCount, len(bounds)+1)
	for i := range out {
		out[i].sum = "0"
	}
	for rows.Next() {
		var b int
		var h hashCount
		if err := rows.Scan(&b, &h.n, &h.sum); err != nil {
			return nil, fmt.Errorf("%s: hash key ranges: %w", s.name, err)
		}
		out[b] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: hash key ranges: %w", s.name, err)
	}
	return out, nil
}

// boundaries returns up to max keys that cut [lo, hi) into ranges of
// step rows, in key order.
func (s *side) boundaries(ctx context.Context, keyCols []string, lo, hi []string, step int64, max int) ([][]string, error) {
	var p params
	nkeys := len(keyCols)
	inner := make([]string, nkeys)
	outer := make([]string, nkeys)
	for i, k := range keyCols {
		alias := "k" + strconv.Itoa(i) + "__"
		inner[i] = "t." + pgx.Identifier{k}.Sanitize() + " AS " + alias
		outer[i] = alias + "::text"
	}
	where := s.where(&p, lo, hi)
	sql := "SELECT " + strings.Join(outer, ", ") + " FROM (SELECT " + strings.Join(inner, ", ") +
		", row_number() OVER (ORDER BY " + strings.Join(s.keyExprs, ", ") + ") AS rn__ FROM " + s.from + where +
		") b WHERE rn__ % " + p.add(step) + " = 0 ORDER BY rn__ LIMIT " + p.add(max)
	rows, err := s.tx.Query(ctx, sql, p.args...)
	if err != nil {
		return nil, fmt.Errorf("%s: cut key range: %w", s.name, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals := make([]string, nkeys)
		ptrs := make([]any, nkeys)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: cut key range: %w", s.name, err)
		}
		out = append(out, vals)
	}
	return out, rows.Err()
}

// leafRow is one row of a leaf range: its key and row hash.
type leafRow struct {
	key  Key
	hash string
}

// rows fetches keys (and row hashes) of [lo, hi), at most limit (0 = all).
func (s *side) rows(ctx context.Context, keyCols []string, lo, hi []string, limit int) ([]leafRow, error) {
	var p params
	sel := make([]string, 0, len(keyCols)+2)
	pairs := make([]string, 0, 2*len(keyCols))
	for _, k := range keyCols {
		col := "t." + pgx.Identifier{k}.Sanitize()
		sel = append(sel, col+"::text")
		pairs = append(pairs, p.add(k)+"::text", col)
	}
	sel = append(sel, "jsonb_build_object("+strings.Join(pairs, ", ")+")::text", s.rowHash+"::text")
	sql := "SELECT " + strings.Join(sel, ", ") + " FROM " + s.from + s.where(&p, lo, hi)
	if limit > 0 {
		sql += " ORDER BY " + strings.Join(s.keyExprs, ", ") + " LIMIT " + p.add(limit)
	}
	rows, err := s.tx.Query(ctx, sql, p.args...)
	if err != nil {
		return nil, fmt.Errorf("%s: read keys: %w", s.name, err)
	}
	defer rows.Close()
	var out []leafRow
	for rows.Next() {
		vals := make([]string, len(keyCols))
		var js, h string
		ptrs := make([]any, 0, len(keyCols)+2)
		for i := range vals {
			ptrs = append(ptrs, &vals[i])
		}
		ptrs = append(ptrs, &js, &h)
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: read keys: %w", s.name, err)
		}
		out = append(out, leafRow{key: Key{Columns: keyCols, Values: vals, JSON: js}, hash: h})
	}
	return out, rows.Err()
}

// comparison compares one table.
type comparison struct {
	opt      Options
	fastHash bool // both servers compute hashtextextended alike
	res      TableResult
	keyCols  []string
	cols     []string // compared columns: the origin's non-generated ones (their replica names)
	o, r     *side
	// The replica's rule for the table: the origin side is then the
	// projection (columns under their replica names, the filter's rows).
	rule       *config.TableRule
	filter     string
	transforms map[string]string

	found        int // differences discovered so far
	oOnly, rOnly map[string]leafRow
	different    []Key
	missingN     int64 // missing rows counted but not listed
	extraN       int64
}

// columnInfo is a column of one side.
type columnInfo struct {
	typ       string
	generated bool
	collation string // the collation's identity ("" when not collatable)
}

func readColumns(ctx context.Context, tx pgx.Tx, t pg.Table) (map[string]columnInfo, string, error) {
	var kind string
	err := tx.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", t.Ident()).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	rows, err := tx.Query(ctx, `
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
       CASE WHEN a.attcollation = 0 THEN ''
            WHEN co.collname = 'default' THEN
                 (SELECT concat_ws(':', to_jsonb(d) ->> 'datlocprovider', d.datcollate,
                                   to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale')
                    FROM pg_database d WHERE d.datname = current_database())
            ELSE concat_ws(':', co.collprovider::text, to_jsonb(co) ->> 'collcollate',
                           to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale') END
  FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, t.Ident())
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := map[string]columnInfo{}
	for rows.Next() {
		var name string
		var c columnInfo
		if err := rows.Scan(&name, &c.typ, &c.generated, &c.collation); err != nil {
			return nil, "", err
		}
		out[name] = c
	}
	return out, kind, rows.Err()
}

// prepare reads both sides' definitions of the table and builds the sides;
// it returns a reason when the table cannot be compared.
func (c *comparison) prepare(ctx context.Context, otx, rtx pgx.Tx) (string, error) {
	t := c.res.Table
	var key, cols []string
	err := otx.QueryRow(ctx, `
SELECT (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
       `+pg.KeyColumnsSQL("c.oid")+`
  FROM pg_class c WHERE c.oid = to_regclass($1)`, t.Ident()).Scan(&cols, &key)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("origin has no table %s", t)
	}
	if err != nil {
		return "", fmt.Errorf("origin: read table: %w", err)
	}
	if key == nil {
		return "", fmt.Errorf("%s has no primary key (or unique index on NOT NULL columns) on the origin", t)
	}
	ocols, okind, err := readColumns(ctx, otx, t)
	if err != nil {
		return "", fmt.Errorf("origin: read columns: %w", err)
	}
	// Under a rule the origin's rows are its projection, named as on the
	// replica.
	proj := rule.Project(c.rule, cols, key)
	projected := proj.SelectList(c.transforms, true)
	renamed := map[string]columnInfo{}
	for i, col := range proj.Origin {
		renamed[proj.Replica[i]] = ocols[col]
	}
	for i, k := range key {
		key[i] = c.rule.As(k)
	}
	cols, ocols = proj.Replica, renamed
	to := rule.Target(c.rule, t) // the replica's table
	rcols, rkind, err := readColumns(ctx, rtx, to)
	if err != nil {
		return "", fmt.Errorf("replica: read columns: %w", err)
	}
	if rcols == nil {
		return "the replica has no such table", nil
	}
	var lacking []string
	for _, col := range cols {
		if rc, ok := rcols[col]; !ok || rc.generated {
			lacking = append(lacking, pgx.Identifier{col}.Sanitize())
		}
	}
	if len(lacking) > 0 {
		return "the replica's table lacks column " + strings.Join(lacking, ", ") + " (or computes it)", nil
	}
	c.keyCols, c.cols = key, cols

	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = "t." + pgx.Identifier{col}.Sanitize()
	}
	rowText := "ROW(" + strings.Join(quoted, ", ") + ")::text"
	// hashtextextended is several times cheaper than md5 but not portable
	// between architectures: it is used when both servers agree on it.
	rowHash := "('x' || substr(md5(" + rowText + "), 1, 16))::bit(64)::bigint"
	if c.fastHash {
		rowHash = "hashtextextended(" + rowText + ", 0)"
	}
	mk := func(name string, tx pgx.Tx, kind string, info map[string]columnInfo) *side {
		tbl := t
		if name == "replica" {
			tbl = to
		}
		from := "ONLY " + tbl.Ident() + " AS t"
		if kind == "p" {
			from = tbl.Ident() + " AS t"
		}
		if name == "origin" && c.rule != nil {
			where := ""
			if c.filter != "" {
				where = " WHERE (" + c.filter + ")"
			}
			from = "(SELECT " + projected + " FROM " + strings.TrimSuffix(from, " AS t") + where + ") AS t"
		}
		s := &side{name: name, tx: tx, from: from, table: tbl.Ident(), rowHash: rowHash, colTypes: map[string]string{}}
		for col, ci := range info {
			s.colTypes[col] = ci.typ
		}
		for _, k := range key {
			s.keyTypes = append(s.keyTypes, info[k].typ)
			e := "t." + pgx.Identifier{k}.Sanitize()
			// Both servers must order keys alike for ranges to mean the same
			// rows: where their collations may differ, compare bytewise.
			if oc, rc := ocols[k].collation, rcols[k].collation; oc != "" && oc != rc {
				e += ` COLLATE "C"`
			}
			s.keyExprs = append(s.keyExprs, e)
		}
		return s
	}
	c.o = mk("origin", otx, okind, ocols)
	c.r = mk("replica", rtx, rkind, rcols)
	return "", nil
}

func (c *comparison) run(ctx context.Context, otx, rtx pgx.Tx) error {
	skip, err := c.prepare(ctx, otx, rtx)
	if err != nil {
		return err
	}
	if skip != "" {
		c.res.Skipped = skip
		return nil
	}
	c.oOnly, c.rOnly = map[string]leafRow{}, map[string]leafRow{}
	var root keyRange
	err = both(c.o, c.r, func(s *side) error {
		h, err := s.hash(ctx, nil, nil)
		if s == c.o {
			root.o = h
		} else {
			root.r = h
		}
		return err
	})
	if err != nil {
		return err
	}
	c.res.OriginRows, c.res.ReplicaRows = root.o.n, root.r.n
	if !root.differs() {
		c.res.Equal = true
		return nil
	}
	// Depth first, in key order, so that what is listed when the list is
	// full is the start of the table.
	stack := []keyRange{root}
	for len(stack) > 0 {
		kr := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if c.found >= c.opt.MaxKeys {
			c.res.Truncated = true
			c.missingN += max(0, kr.o.n-kr.r.n)
			c.extraN += max(0, kr.r.n-kr.o.n)
			continue
		}
		switch {
		case kr.o.n == 0 || kr.r.n == 0:
			err = c.oneSided(ctx, kr)
		case max(kr.o.n, kr.r.n) <= int64(c.opt.LeafRows):
			err = c.leaf(ctx, kr)
		default:
			var children []keyRange
			children, err = c.split(ctx, kr)
			if err == nil && children == nil {
				err = c.leaf(ctx, kr)
			}
			for i := len(children) - 1; i >= 0; i-- {
				if children[i].differs() {
					stack = append(stack, children[i])
				}
			}
		}
		if err != nil {
			return err
		}
	}
	c.finish()
	return nil
}

// oneSided lists a range that only one side has rows in.
func (c *comparison) oneSided(ctx context.Context, kr keyRange) error {
	s, n := c.o, kr.o.n
	if n == 0 {
		s, n = c.r, kr.r.n
	}
	limit := c.opt.MaxKeys - c.found
	rows, err := s.rows(ctx, c.keyCols, kr.lo, kr.hi, limit)
	if err != nil {
		return err
	}
	into := c.oOnly
	if s == c.r {
		into = c.rOnly
	}
	for _, r := range rows {
		into[r.key.id()] = r
	}
	c.found += len(rows)
	if rest := n - int64(len(rows)); rest > 0 {
		c.res.Truncated = true
		if s == c.o {
			c.missingN += rest
		} else {
			c.extraN += rest
		}
	}
	return nil
}

// leaf compares a small range key by key.
func (c *comparison) leaf(ctx context.Context, kr keyRange) error {
	var orows, rrows []leafRow
	err := both(c.o, c.r, func(s *side) error {
		rows, err := s.rows(ctx, c.keyCols, kr.lo, kr.hi, 0)
		if s == c.o {
			orows = rows
		} else {
			rrows = rows
		}
		return err
	})
	if err != nil {
		return err
	}
	onReplica := make(map[string]leafRow, len(rrows))
	for _, r := range rrows {
		onReplica[r.key.id()] = r
	}
	for _, o := range orows {
		id := o.key.id()
		r, ok := onReplica[id]
		switch {
		case !ok:
			c.oOnly[id] = o
			c.found++
		case r.hash != o.hash:
			c.different = append(c.different, o.key)
			c.found++
		}
		delete(onReplica, id)
	}
	for id, r := range onReplica {
		c.rOnly[id] = r
		c.found++
	}
	return nil
}

// split cuts a range into up to Fanout ranges of about equal rows (cut at
// keys of the side with more rows) and hashes each on both sides. It
// returns nil when the range cannot be cut.
func (c *comparison) split(ctx context.Context, kr keyRange) ([]keyRange, error) {
	s, n := c.o, kr.o.n
	if kr.r.n > n {
		s, n = c.r, kr.r.n
	}
	step := (n + int64(c.opt.Fanout) - 1) / int64(c.opt.Fanout)
	bounds, err := s.boundaries(ctx, c.keyCols, kr.lo, kr.hi, step, c.opt.Fanout-1)
	if err != nil || len(bounds) == 0 {
		return nil, err
	}
	var oh, rh []hashCount
	err = both(c.o, c.r, func(s *side) error {
		h, err := s.bucketHashes(ctx, kr.lo, kr.hi, bounds)
		if s == c.o {
			oh = h
		} else {
			rh = h
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]keyRange, len(bounds)+1)
	for i := range out {
		out[i] = keyRange{lo: kr.lo, hi: kr.hi, o: oh[i], r: rh[i]}
		if i > 0 {
			out[i].lo = bounds[i-1]
		}
		if i < len(bounds) {
			out[i].hi = bounds[i]
		}
	}
	return out, nil
}

// finish turns what the ranges found into the table's result. A key found
// on one side in one range and on the other side in another (possible only
// if the servers order keys differently) is compared by row hash.
func (c *comparison) finish() {
	for id, o := range c.oOnly {
		if r, ok := c.rOnly[id]; ok {
			if r.hash != o.hash {
				c.different = append(c.different, o.key)
			}
			delete(c.oOnly, id)
			delete(c.rOnly, id)
		}
	}
	res := &c.res
	for _, o := range c.oOnly {
		res.Missing = append(res.Missing, o.key)
	}
	for _, r := range c.rOnly {
		res.Extra = append(res.Extra, r.key)
	}
	res.Different = c.different
	for _, l := range [][]Key{res.Missing, res.Extra, res.Different} {
		slices.SortFunc(l, compareKeys)
	}
	res.MissingCount = int64(len(res.Missing)) + c.missingN
	res.ExtraCount = int64(len(res.Extra)) + c.extraN
	res.DifferentCount = int64(len(res.Different))
	res.Equal = res.MissingCount == 0 && res.ExtraCount == 0 && res.DifferentCount == 0 && !res.Truncated
}

// loadRule reads the filter that install compiled for the replica's rule;
// a rule changed in the config since install is refused (the replica
// follows the installed one).
func (c *comparison) loadRule(ctx context.Context, otx pgx.Tx, replica string) error {
	t := c.res.Table
	installed, err := rule.Installed(ctx, otx, replica, t)
	if err != nil {
		return err
	}
	if installed != c.rule.Hash() {
		return fmt.Errorf("the rule for %s in the config is not the one installed on the origin: run pgreplica install (and sync the table again)", t)
	}
	if c.rule != nil && c.rule.Filtered() {
		if c.filter, err = rule.Filter(ctx, otx, replica, t); err != nil {
			return err
		}
	}
	if c.rule != nil && len(c.rule.Transform) > 0 {
		c.transforms, err = rule.Transforms(ctx, otx, replica, t)
	}
	return err
}
