package demo

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	rows := func(kv ...string) []row {
		var out []row
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, row{key: kv[i], data: kv[i+1]})
		}
		return out
	}
	cases := []struct {
		name      string
		want, got []row
		contains  string
	}{
		{"equal", rows("[1]", "a", "[2]", "b"), rows("[1]", "a", "[2]", "b"), ""},
		{"both empty", nil, nil, ""},
		{"missing last", rows("[1]", "a", "[2]", "b"), rows("[1]", "a"), "key [2] missing on the replica"},
		{"extra last", rows("[1]", "a"), rows("[1]", "a", "[3]", "c"), "key [3] only on the replica"},
		{"missing middle", rows("[1]", "a", "[2]", "b", "[3]", "c"), rows("[1]", "a", "[3]", "c"), "key [2] missing on the replica"},
		{"extra middle", rows("[1]", "a", "[3]", "c"), rows("[1]", "a", "[2]", "x", "[3]", "c"), "key [2] only on the replica"},
		{"changed", rows("[1]", "a"), rows("[1]", "z"), "key [1] differs"},
	}
	for _, c := range cases {
		got := diff(c.want, c.got)
		if c.contains == "" && got != "" || c.contains != "" && !strings.Contains(got, c.contains) {
			t.Errorf("%s: diff = %q, want %q", c.name, got, c.contains)
		}
	}
}
