package replay

import (
	"context"
	"log/slog"
	"slices"

	"github.com/tidwall/gjson"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/rule"
)

// router turns the events of the tables a replica has rules for
// (replicas[].tables) into what that replica receives. Capture recorded,
// for each filtered replica, which side of its filter the old and the new
// row are on (the event's route: 1 old in, 2 new in); so an UPDATE is an
// UPDATE (in -> in), an INSERT of the whole new row (out -> in), a DELETE
// (in -> out) or nothing (out -> out); an INSERT or a DELETE outside the
// filter is nothing. Then the columns the rule does not send are dropped
// (never the key) and the others take their replica names.
type router struct {
	replica string
	tables  map[pg.Table]*routedTable
	log     *slog.Logger
}

type routedTable struct {
	rule   *config.TableRule
	target pg.Table // the replica's table
	key    []string
	warned bool
}

// newRouter reads the key columns of the ruled tables from the origin; nil
// when the replica has no rules.
func newRouter(ctx context.Context, q rule.Querier, r config.Replica, log *slog.Logger) (*router, error) {
	if len(r.Tables) == 0 {
		return nil, nil
	}
	rules, err := rule.Tables(r)
	if err != nil {
		return nil, err
	}
	rt := &router{replica: r.Name, tables: map[pg.Table]*routedTable{}, log: log}
	for t, tr := range rules {
		_, key, err := rule.Columns(ctx, q, t)
		if err != nil {
			return nil, err
		}
		rt.tables[t] = &routedTable{rule: tr, key: key, target: rule.Target(tr, t)}
	}
	return rt, nil
}

// route rewrites e for the replica; false when the replica receives nothing
// of it.
func (rt *router) route(e *event) bool {
	if rt == nil {
		return true
	}
	t := rt.tables[e.Table]
	if t == nil {
		return true
	}
	e.Table = t.target
	if e.Op == 'T' {
		return true
	}
	if t.rule.Filtered() {
		side := gjson.GetBytes(e.Route, rt.replica)
		if !side.Exists() {
			// Captured before the rule was installed, or by capture's slow
			// path after a schema change: the table's rule hash tells
			// tables and status that it needs a new copy.
			if !t.warned {
				t.warned = true
				rt.log.Warn("an event of a filtered table carries no filter result: applied unfiltered; copy the table again (pgreplica sync --table) once pgreplica install made its capture current",
					"table", t.target.String(), "event", e.ID)
			}
		} else {
			old, now := side.Int()&1 != 0, side.Int()&2 != 0
			switch e.Op {
			case 'I':
				if !now {
					return false
				}
			case 'D':
				if !old {
					return false
				}
			case 'U':
				switch {
				case old && now:
				case now: // moved into the filter: the whole new row
					e.Op, e.Key, e.key = 'I', nil, nil
				case old: // moved out of it
					e.Op, e.Data, e.data = 'D', nil, nil
				default:
					return false
				}
			}
		}
	}
	if len(t.rule.Transform) > 0 && (e.Op == 'I' || e.Op == 'U') {
		e.Data = rt.transform(t, e)
	}
	e.Key, e.key = t.project(e.Key), nil
	e.Data, e.data = t.project(e.Data), nil
	if e.Op == 'U' && len(parseImage(e.Data)) == 0 {
		return false // it changed only columns the replica does not receive
	}
	return true
}

// project drops the columns the rule does not send and renames the others.
func (t *routedTable) project(js []byte) []byte {
	if js == nil {
		return nil
	}
	im := parseImage(js)
	out := im[:0]
	changed := false
	for _, f := range im {
		if !t.rule.Carries(f.key) && !slices.Contains(t.key, f.key) {
			changed = true
			continue
		}
		if to := t.rule.As(f.key); to != f.key {
			f.key, changed = to, true
		}
		out = append(out, f)
	}
	if !changed {
		return js
	}
	return []byte(out.json())
}

// transform sets the transformed columns of e's new row to the values
// capture computed for the replica (the route's "" object). Without them
// (captured before the rule) the columns are left out rather than sent as
// they are: a transform often hides what the replica must not see.
func (rt *router) transform(t *routedTable, e *event) []byte {
	var values gjson.Result
	gjson.ParseBytes(e.Route).ForEach(func(k, v gjson.Result) bool {
		if k.Str == "" {
			values = v.Get(rt.replica)
			return false
		}
		return true
	})
	im := parseImage(e.Data)
	out := im[:0]
	for _, f := range im {
		if t.rule.Transform[f.key] == "" {
			out = append(out, f)
		}
	}
	if !values.Exists() {
		if !t.warned {
			t.warned = true
			rt.log.Warn("an event of a transformed table carries no transformed values: its transformed columns are left out; copy the table again (pgreplica sync --table) once pgreplica install made its capture current",
				"table", t.target.String(), "event", e.ID)
		}
		return []byte(out.json())
	}
	values.ForEach(func(k, v gjson.Result) bool {
		out = append(out, field{key: k.Str, raw: v.Raw, isStr: v.Type == gjson.String})
		return true
	})
	return []byte(out.json())
}
