package capture

import (
	"cmp"
	"slices"
)

// statusOrder puts problems first.
var statusOrder = map[Status]int{Missing: 0, Removed: 1, Stale: 2, Disabled: 3, NoKey: 4, Installed: 5}

// SortByStatus sorts tables problems first, then by name.
func SortByStatus(tables []TableInfo) {
	slices.SortStableFunc(tables, func(x, y TableInfo) int {
		if c := cmp.Compare(statusOrder[x.Status], statusOrder[y.Status]); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Table.Schema, y.Table.Schema); c != 0 {
			return c
		}
		return cmp.Compare(x.Table.Name, y.Table.Name)
	})
}
