package config

import (
	"fmt"
	"path"
	"strings"
)

// OwnSchema holds pgreplica's own tables on every node. Match never selects it.
const OwnSchema = "pgreplica"

// Match reports whether schema.table is replicated: some include pattern
// matches it, no exclude pattern does, and it is not in OwnSchema.
//
// A pattern is "schemaglob.tableglob", split at its first dot, each half a
// path.Match glob ("*", "?", "[a-z]", "\" escapes) compared with the raw,
// unquoted, case-sensitive name. "/" is an ordinary character here.
func (t Tables) Match(schema, table string) bool {
	if schema == OwnSchema {
		return false
	}
	return matchAny(t.Include, schema, table) && !matchAny(t.Exclude, schema, table)
}

func matchAny(patterns []string, schema, table string) bool {
	for _, p := range patterns {
		schemaGlob, tableGlob, ok := strings.Cut(p, ".")
		if ok && glob(schemaGlob, schema) && glob(tableGlob, table) {
			return true
		}
	}
	return false
}

// glob is path.Match with "/" as an ordinary character, since "/" is legal
// in PostgreSQL names: it is swapped for NUL, which names cannot contain.
func glob(pattern, name string) bool {
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", "\x00"), strings.ReplaceAll(name, "/", "\x00"))
	return ok
}

// patternProblem returns what is wrong with a table pattern, or "".
func patternProblem(p string) string {
	schemaGlob, tableGlob, ok := strings.Cut(p, ".")
	if !ok || schemaGlob == "" || tableGlob == "" {
		return fmt.Sprintf("pattern must be schema.table (got %q)", p)
	}
	for _, g := range []string{schemaGlob, tableGlob} {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Sprintf("bad pattern %q: %v", p, err)
		}
	}
	return ""
}
