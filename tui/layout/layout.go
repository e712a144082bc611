// Package layout computes where the parts of the screen go from the window
// size alone. It is pure so that it can be table-tested.
package layout

// Minimum terminal size; below it the TUI shows one "too small" screen.
// The screens are drawn for 80x24 (and 80x23, what tmux leaves in an 80x24
// terminal); down to the minimum they degrade (cut columns, fewer rows)
// rather than refuse.
const (
	MinWidth  = 60
	MinHeight = 16
	// WideWidth is from where a side-by-side detail pane is shown.
	WideWidth = 120
	// StepListWidth is the wizard's step list on the left.
	StepListWidth = 24
)

// Chrome is the number of rows used around the body: header, tabs, rule
// above the body, rule below it, flash line, help line.
const Chrome = 6

// Layout is the geometry of one frame.
type Layout struct {
	Width, Height int
	TooSmall      bool
	// Body is the area between the chrome.
	BodyWidth, BodyHeight int
	// Wide: a detail pane is put beside the list instead of under it.
	Wide bool
	// DetailWidth is the side pane's width when Wide.
	DetailWidth int
}

// Compute lays out a window of w x h.
func Compute(w, h int) Layout {
	l := Layout{Width: w, Height: h}
	if w < MinWidth || h < MinHeight {
		l.TooSmall = true
		return l
	}
	l.BodyWidth = w
	l.BodyHeight = h - Chrome
	if w >= WideWidth {
		l.Wide = true
		l.DetailWidth = w * 2 / 5
		if l.DetailWidth > 70 {
			l.DetailWidth = 70
		}
	}
	return l
}

// Split divides n rows between a list and a detail below it: the detail
// gets want rows at most, and never more than half; the list keeps at
// least min rows.
func Split(n, want, min int) (list, detail int) {
	if n <= min {
		return n, 0
	}
	detail = want
	if detail > n/2 {
		detail = n / 2
	}
	if n-detail < min {
		detail = n - min
	}
	return n - detail, detail
}

// Window returns the first index to show so that cursor is visible in a
// list of n rows shown height at a time, keeping the previous offset when
// it still works (stable scrolling).
func Window(offset, cursor, n, height int) int {
	if height <= 0 || n <= height {
		return 0
	}
	if cursor < offset {
		offset = cursor
	}
	if cursor >= offset+height {
		offset = cursor - height + 1
	}
	if offset > n-height {
		offset = n - height
	}
	if offset < 0 {
		offset = 0
	}
	return offset
}
