package capture

import (
	"context"
	"fmt"
	"strings"

	"github.com/agnivade/levenshtein"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// UnmatchedIncludes lists the tables.include patterns of cfg that match
// no table of the origin (a typo captures nothing), each with a "did you
// mean" when a table's name is close.
func UnmatchedIncludes(ctx context.Context, cfg *config.Config, purpose string) ([]string, error) {
	all, err := ListOrigin(ctx, cfg, purpose, UserTables)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range cfg.Tables.Include {
		found := false
		for _, t := range all {
			if config.Matches(p, t.Table.Schema, t.Table.Name) {
				found = true
				break
			}
		}
		if found {
			continue
		}
		msg := fmt.Sprintf("tables.include %q matches no table of the origin", p)
		if c := closest(p, all); c != "" {
			msg += " (did you mean " + c + "?)"
		}
		out = append(out, msg)
	}
	return out, nil
}

// CheckOriginTables checks that each of tables is a table of the origin
// (else the error says so, with "did you mean" for a case or quoting
// mismatch or a near name) and, when needKey, that it has a primary key.
func CheckOriginTables(ctx context.Context, cfg *config.Config, tables []pg.Table, needKey bool) error {
	all, err := ListOrigin(ctx, cfg, "", UserTables)
	if err != nil {
		return err
	}
	byName := make(map[pg.Table]TableInfo, len(all))
	for _, t := range all {
		byName[t.Table] = t
	}
	for _, want := range tables {
		t, ok := byName[want]
		if !ok {
			msg := fmt.Sprintf("no table %s on the origin", want)
			for _, o := range all {
				if strings.EqualFold(o.Table.Schema, want.Schema) && strings.EqualFold(o.Table.Name, want.Name) {
					return fmt.Errorf("%s (did you mean %s? names are case-sensitive: quote them as in SQL, '%s')", msg, o.Table, o.Table)
				}
			}
			if c := closest(want.Schema+"."+want.Name, all); c != "" {
				msg += " (did you mean " + c + "?)"
			}
			return fmt.Errorf("%s", msg)
		}
		if needKey && len(t.Key) == 0 {
			return fmt.Errorf("%s has no primary key: UPDATE and DELETE could not be matched on a replica, so it cannot be captured (add a primary key first)", want)
		}
	}
	return nil
}

// closest is the table whose raw schema.name is nearest to s (case-blind,
// at most 2 edits), quoted as SQL would, or "".
func closest(s string, all []TableInfo) string {
	s = strings.ToLower(s)
	best, bestD := "", 3
	for _, t := range all {
		d := levenshtein.ComputeDistance(s, strings.ToLower(t.Table.Schema+"."+t.Table.Name))
		if d < bestD {
			best, bestD = t.Table.String(), d
		}
	}
	return best
}
