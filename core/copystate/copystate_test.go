package copystate

import "testing"

func TestLeast(t *testing.T) {
	cases := []struct {
		in   []State
		want State
	}{
		{nil, Replicating},
		{[]State{Replicating, Catchup}, Catchup},
		{[]State{Catchup, Copying, Replicating}, Copying},
		{[]State{Replicating}, Replicating},
	}
	for _, c := range cases {
		if got := Least(c.in...); got != c.want {
			t.Errorf("Least(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	if !Copying.Syncing() || !Catchup.Syncing() || Replicating.Syncing() {
		t.Error("Syncing: copying and catchup only")
	}
}
