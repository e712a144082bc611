package capture

import (
	"cmp"
	"slices"
)

// statusOrder puts problems first.
var statusOrder = map[Status]int{Missing: 0, Disabled: 1, NoKey: 2, Installed: 3}

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
