package layout

import "testing"

func TestCompute(t *testing.T) {
	cases := []struct {
		w, h     int
		tooSmall bool
		body     int
		wide     bool
		detail   int
	}{
		{80, 24, false, 18, false, 0},
		{79, 24, false, 18, false, 0}, // a little narrow: degrade, not refuse
		{80, 23, false, 17, false, 0}, // tmux in an 80x24 terminal
		{60, 16, false, 10, false, 0},
		{59, 24, true, 0, false, 0},
		{80, 15, true, 0, false, 0},
		{100, 30, false, 24, false, 0},
		{119, 40, false, 34, false, 0},
		{120, 40, false, 34, true, 48},
		{200, 50, false, 44, true, 70},
	}
	for _, c := range cases {
		l := Compute(c.w, c.h)
		if l.TooSmall != c.tooSmall || l.BodyHeight != c.body || l.Wide != c.wide || l.DetailWidth != c.detail {
			t.Errorf("Compute(%d, %d) = %+v", c.w, c.h, l)
		}
		if !l.TooSmall && l.BodyHeight+Chrome != c.h {
			t.Errorf("Compute(%d, %d): body %d + chrome %d != height", c.w, c.h, l.BodyHeight, Chrome)
		}
	}
}

func TestSplit(t *testing.T) {
	cases := []struct{ n, want, min, list, detail int }{
		{18, 6, 5, 12, 6},
		{10, 6, 5, 5, 5},
		{8, 6, 5, 5, 3},
		{4, 6, 5, 4, 0},
		{30, 6, 5, 24, 6},
	}
	for _, c := range cases {
		l, d := Split(c.n, c.want, c.min)
		if l != c.list || d != c.detail {
			t.Errorf("Split(%d, %d, %d) = %d, %d; want %d, %d", c.n, c.want, c.min, l, d, c.list, c.detail)
		}
	}
}

func TestWindow(t *testing.T) {
	cases := []struct{ offset, cursor, n, h, want int }{
		{0, 0, 5, 10, 0},
		{0, 9, 20, 10, 0},
		{0, 10, 20, 10, 1},
		{5, 3, 20, 10, 3},
		{5, 8, 20, 10, 5},    // still visible: keep
		{15, 19, 20, 10, 10}, // clamp to the end
	}
	for _, c := range cases {
		if got := Window(c.offset, c.cursor, c.n, c.h); got != c.want {
			t.Errorf("Window(%d, %d, %d, %d) = %d, want %d", c.offset, c.cursor, c.n, c.h, got, c.want)
		}
	}
}
