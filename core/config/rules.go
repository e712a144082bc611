package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// TableRule is what one replica receives of one origin table: the rows
// that pass a filter, the columns of a projection, under the replica's own
// column names. Rules belong to a replica (replicas[].tables).
type TableRule struct {
	Table   string            `yaml:"table"`   // the origin table, schema.table
	Where   string            `yaml:"where"`   // SQL boolean over the row's columns; "" = every row
	Columns Columns           `yaml:"columns"` // which columns travel; the key always does
	Rename  map[string]string `yaml:"rename"`  // origin column -> replica column
	Target  string            `yaml:"target"`  // the replica's table, schema.table; "" = the origin's name
	// Transform gives origin columns another value for this replica: an
	// SQL expression over the row's (origin) columns, computed at capture.
	Transform map[string]string `yaml:"transform"`

	// Field is the rule's place in the config ("replicas[0].tables[1]") and
	// Lines the "file:line" of its keys (where, columns, rename, and "" for
	// the rule itself), filled by Load, for errors found at install.
	Field string            `yaml:"-"`
	Lines map[string]string `yaml:"-"`
}

// Columns selects columns by name: Include lists the columns that travel
// (the key is added), Exclude those that do not. At most one of the two.
type Columns struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Place returns the prefix that places an error about key of the rule:
// "pgreplica.yaml:14: replicas[0].tables[1].where: ".
func (r TableRule) Place(key string) string {
	field := r.Field
	if key != "" {
		field += "." + key
	}
	loc := r.Lines[key]
	if loc == "" {
		loc = r.Lines[""]
	}
	if loc == "" {
		return field + ": "
	}
	return loc + ": " + field + ": "
}

// Filtered reports whether the rule lets only some rows through.
func (r *TableRule) Filtered() bool { return r != nil && strings.TrimSpace(r.Where) != "" }

// Carries reports whether column col (an origin column name) travels under
// the rule, key columns aside (they always travel). Without a rule (nil)
// every column does.
func (r *TableRule) Carries(col string) bool {
	if r == nil {
		return true
	}
	if len(r.Columns.Include) > 0 {
		return slices.Contains(r.Columns.Include, col)
	}
	return !slices.Contains(r.Columns.Exclude, col)
}

// As is the name of origin column col on the replica.
func (r *TableRule) As(col string) string {
	if r == nil {
		return col
	}
	if to, ok := r.Rename[col]; ok {
		return to
	}
	return col
}

// Hash identifies what the rule selects: two rules with one hash give the
// same rows. A replica records the hash its copy of a table was made under;
// another hash means the table needs a new copy. The hash of no rule is "".
func (r *TableRule) Hash() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "where=%q\n", strings.TrimSpace(r.Where))
	inc := slices.Sorted(slices.Values(r.Columns.Include))
	exc := slices.Sorted(slices.Values(r.Columns.Exclude))
	fmt.Fprintf(&b, "include=%q\nexclude=%q\n", inc, exc)
	for _, k := range slices.Sorted(mapKeys(r.Rename)) {
		fmt.Fprintf(&b, "rename %q=%q\n", k, r.Rename[k])
	}
	if r.Target != "" {
		fmt.Fprintf(&b, "target=%q\n", r.Target)
	}
	for _, k := range slices.Sorted(mapKeys(r.Transform)) {
		fmt.Fprintf(&b, "transform %q=%q\n", k, strings.TrimSpace(r.Transform[k]))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:6])
}

// Summary is the rule in a few words for a table view: "where region =
// 'eu'; -2 columns; 1 renamed".
func (r *TableRule) Summary() string {
	if r == nil {
		return ""
	}
	var parts []string
	if r.Filtered() {
		parts = append(parts, "where "+strings.TrimSpace(r.Where))
	}
	switch {
	case len(r.Columns.Include) > 0:
		parts = append(parts, "columns "+strings.Join(r.Columns.Include, ",")+" (+key)")
	case len(r.Columns.Exclude) > 0:
		parts = append(parts, "without "+strings.Join(r.Columns.Exclude, ","))
	}
	for _, k := range slices.Sorted(mapKeys(r.Rename)) {
		parts = append(parts, k+"→"+r.Rename[k])
	}
	for _, k := range slices.Sorted(mapKeys(r.Transform)) {
		parts = append(parts, k+" = "+strings.TrimSpace(r.Transform[k]))
	}
	if r.Target != "" {
		parts = append(parts, "into "+r.Target)
	}
	if len(parts) == 0 {
		return "every row and column"
	}
	return strings.Join(parts, "; ")
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Rule returns replica r's rule for the origin table written "schema.table"
// as pgreplica prints it (see RuleTable), or nil.
func (r Replica) Rule(table string) *TableRule {
	for i := range r.Tables {
		if r.Tables[i].Table == table {
			return &r.Tables[i]
		}
	}
	return nil
}

// ruleProblems checks replica i's rules.
func (r Replica) ruleProblems(i int, add func(field, format string, args ...any)) {
	first := map[string]int{}
	into := map[string]int{}
	for j, t := range r.Tables {
		field := fmt.Sprintf("replicas[%d].tables[%d]", i, j)
		if r.File {
			add(field, "a file replica takes every row and column: rules (tables:) are for replicas reached through a dsn")
			continue
		}
		switch prev, seen := first[t.Table]; {
		case strings.TrimSpace(t.Table) == "":
			add(field+".table", "missing: name the origin table as schema.table")
		case strings.ContainsAny(t.Table, "*?["):
			add(field+".table", "one table as schema.table, not a pattern (got %q)", t.Table)
		case !strings.Contains(t.Table, "."):
			add(field+".table", "want schema.table (got %q)", t.Table)
		case seen:
			add(field+".table", "duplicate, already ruled by replicas[%d].tables[%d] (got %q)", i, prev, t.Table)
		default:
			first[t.Table] = j
		}
		switch prev, seen := into[t.Target]; {
		case t.Target == "":
		case strings.ContainsAny(t.Target, "*?[") || !strings.Contains(t.Target, "."):
			add(field+".target", "one table as schema.table (got %q)", t.Target)
		case seen:
			add(field+".target", "replicas[%d].tables[%d] goes to %s too: several tables into one is refused (their keys could collide)", i, prev, t.Target)
		default:
			into[t.Target] = j
		}
		if len(t.Columns.Include) > 0 && len(t.Columns.Exclude) > 0 {
			add(field+".columns", "include and exclude together: use one of the two")
		}
		if t.Columns.Include != nil && len(t.Columns.Include) == 0 {
			add(field+".columns.include", "empty: list the columns that travel (the key always does), or use exclude")
		}
		for _, col := range slices.Sorted(mapKeys(t.Transform)) {
			switch {
			case strings.TrimSpace(t.Transform[col]) == "":
				add(field+".transform", "column %s: empty expression", col)
			case !t.Carries(col):
				add(field+".transform", "column %s is transformed but not carried (columns)", col)
			}
		}
		to := map[string]string{}
		for _, from := range slices.Sorted(mapKeys(t.Rename)) {
			name := t.Rename[from]
			if strings.TrimSpace(name) == "" {
				add(field+".rename", "column %s: empty new name", from)
				continue
			}
			if prev, ok := to[name]; ok {
				add(field+".rename", "columns %s and %s both renamed to %s", prev, from, name)
			}
			to[name] = from
			if !t.Carries(from) {
				add(field+".rename", "column %s is renamed but not carried (columns)", from)
			}
		}
	}
}
