package config

// Why says why schema.table is not replicated ("" when Match selects it):
// which exclude pattern drops it, or that no include pattern names it.
func (t Tables) Why(schema, table string) string {
	switch {
	case schema == OwnSchema:
		return "pgreplica's own schema"
	case !matchAny(t.Include, schema, table):
		return "no tables.include pattern names it"
	}
	for _, p := range t.Exclude {
		if matchAny([]string{p}, schema, table) {
			return "tables.exclude " + `"` + p + `"` + " drops it"
		}
	}
	return ""
}

// Matches reports whether the one pattern p ("schemaglob.tableglob")
// matches schema.table.
func Matches(p, schema, table string) bool { return matchAny([]string{p}, schema, table) }
