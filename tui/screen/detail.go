package screen

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// Detailer is a screen with a detail view of its selected item (k9s's
// describe, psql's \x): the whole text, which the root wraps to the window
// and scrolls. ok is false when nothing is selected.
type Detailer interface {
	Detail() (title string, text []string, ok bool)
}

// OpenDetailMsg asks the root to open the current screen's detail view.
type OpenDetailMsg struct{}

// OpenDetail is the command a screen returns on enter to open its detail.
func OpenDetail() tea.Msg { return OpenDetailMsg{} }

// DetailKey opens the detail view of the selected item.
var DetailKey = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail (whole text)"))

// Pager scrolls a text taller than its window: j/k, ctrl+d/u, g/G.
type Pager struct {
	Top   int
	lastH int
	lastN int
}

// Key applies a scroll key; it reports whether msg was one.
func (p *Pager) Key(msg tea.KeyPressMsg) bool {
	page := max(p.lastH, 1)
	maxTop := max(p.lastN-page, 0)
	switch {
	case key.Matches(msg, Up):
		p.Top--
	case key.Matches(msg, Down):
		p.Top++
	case key.Matches(msg, HalfDown), msg.String() == "space":
		p.Top += max(page/2, 1)
	case key.Matches(msg, HalfUp):
		p.Top -= max(page/2, 1)
	case key.Matches(msg, Top):
		p.Top = 0
	case key.Matches(msg, Bottom):
		p.Top = maxTop
	default:
		return false
	}
	p.Top = min(max(p.Top, 0), maxTop)
	return true
}

// View shows lines from Top in w x h; when they do not all fit, the last
// row says which lines are shown.
func (p *Pager) View(lines []string, w, h int) string {
	p.lastN, p.lastH = len(lines), h
	if len(lines) <= h {
		p.Top = 0
		return Block(strings.Join(lines, "\n"), w, h)
	}
	p.lastH = max(h-1, 1)
	p.Top = min(max(p.Top, 0), max(len(lines)-p.lastH, 0))
	end := min(p.Top+p.lastH, len(lines))
	out := append([]string(nil), lines[p.Top:end]...)
	for len(out) < p.lastH {
		out = append(out, "")
	}
	more := fmt.Sprintf(" lines %d-%d of %d · j/k ctrl+d/u scroll", p.Top+1, end, len(lines))
	out = append(out, more)
	return Block(strings.Join(out, "\n"), w, h)
}

// WrapAll wraps every paragraph of text to w cells. A paragraph that fits
// is kept as it is; a "label   value" line wraps its value under itself;
// another keeps its leading indent on its continuation lines.
func WrapAll(text []string, w int) []string {
	var out []string
	for _, para := range text {
		if Width(para) <= w {
			out = append(out, para)
			continue
		}
		indent := len(para) - len(strings.TrimLeft(para, " "))
		if v := valueColumn(para); v > 0 && v < w/2 {
			indent = v
		}
		if indent >= w/2 {
			indent = 0
		}
		head, pad := para[:indent], strings.Repeat(" ", indent)
		for i, l := range Wrap(para[indent:], w-indent) {
			if i == 0 {
				out = append(out, head+l)
			} else {
				out = append(out, pad+l)
			}
		}
	}
	return out
}

// valueColumn is where the value of a "label   value" line starts (after
// a run of two or more spaces following the label), or 0.
func valueColumn(s string) int {
	if s == "" || s[0] == ' ' {
		return 0
	}
	i := strings.Index(s, "  ")
	if i < 0 {
		return 0
	}
	j := i
	for j < len(s) && s[j] == ' ' {
		j++
	}
	if j == len(s) {
		return 0
	}
	return j
}
