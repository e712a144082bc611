package replay

import "testing"

func TestSnapshotParseVisible(t *testing.T) {
	s, err := ParseSnapshot("100:110:103,107")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "100:110:103,107" {
		t.Fatalf("String() = %q", got)
	}
	for txid, want := range map[uint64]bool{99: true, 100: true, 103: false, 105: true, 107: false, 109: true, 110: false, 200: false} {
		if got := s.Visible(txid); got != want {
			t.Errorf("Visible(%d) = %v, want %v", txid, got, want)
		}
	}
	for _, bad := range []string{"", "1:2", "x:2:", "5:2:", "1:2:a"} {
		if _, err := ParseSnapshot(bad); err == nil {
			t.Errorf("ParseSnapshot(%q) accepted", bad)
		}
	}
}

func TestSnapshotCovers(t *testing.T) {
	mk := func(s string) Snapshot {
		x, err := ParseSnapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	cases := []struct {
		s, o string
		want bool
	}{
		{"200:200:", "100:150:120", true},
		{"100:150:120", "100:150:120", true},
		{"100:150:120", "100:150:", false},    // o saw 120 finished, s still running
		{"100:150:", "100:160:", false},       // o saw 150..159
		{"120:160:130", "100:150:120", false}, // o saw 130 finished, s still running
		{"120:160:125", "100:150:120,125", true},
	}
	for _, c := range cases {
		if got := mk(c.s).Covers(mk(c.o)); got != c.want {
			t.Errorf("%s covers %s = %v, want %v", c.s, c.o, got, c.want)
		}
	}
}
