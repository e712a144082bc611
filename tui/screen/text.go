package screen

import (
	"fmt"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// Fit cuts s to w cells (with an ellipsis) or pads it with spaces to w.
func Fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	n := lipgloss.Width(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-n)
}

// FitRight is Fit aligned right.
func FitRight(s string, w int) string {
	n := lipgloss.Width(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	return strings.Repeat(" ", w-n) + s
}

// Block makes s exactly w x h: every line fitted, missing lines blank,
// extra lines cut.
func Block(s string, w, h int) string {
	lines := strings.Split(s, "\n")
	if s == "" {
		lines = nil
	}
	out := make([]string, h)
	for i := range out {
		if i < len(lines) {
			out[i] = Fit(lines[i], w)
		} else {
			out[i] = strings.Repeat(" ", max(w, 0))
		}
	}
	return strings.Join(out, "\n")
}

// Wrap breaks plain text into lines of at most w cells at spaces; a word
// longer than w (a DSN, a JSON key) is broken inside, so nothing is cut.
func Wrap(s string, w int) []string {
	w = max(w, 1)
	var out []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case lipgloss.Width(line)+1+lipgloss.Width(word) <= w:
				line += " " + word
			default:
				out = append(out, hardWrap(line, w)...)
				line = word
			}
		}
		out = append(out, hardWrap(line, w)...)
	}
	return out
}

func hardWrap(line string, w int) []string {
	if lipgloss.Width(line) <= w {
		return []string{line}
	}
	return strings.Split(ansi.Hardwrap(line, w, true), "\n")
}

// Overlay draws box (several lines) over base, centred.
func Overlay(base, box string, w, h int) string {
	bl := strings.Split(Block(base, w, h), "\n")
	xl := strings.Split(box, "\n")
	bw := 0
	for _, l := range xl {
		bw = max(bw, lipgloss.Width(l))
	}
	top := max((h-len(xl))/2, 0)
	left := max((w-bw)/2, 0)
	for i, l := range xl {
		y := top + i
		if y >= len(bl) {
			break
		}
		row := bl[y]
		bl[y] = ansi.Cut(row, 0, left) + Fit(l, bw) + ansi.Cut(row, left+bw, w)
	}
	return strings.Join(bl, "\n")
}

// Frame draws a box of width w around lines with a title in the top border.
func Frame(title string, lines []string, w int) string {
	b := lipgloss.NormalBorder()
	inner := w - 2
	var sb strings.Builder
	t := b.Top + " " + title + " "
	sb.WriteString(b.TopLeft + Fit(t+strings.Repeat(b.Top, max(inner-lipgloss.Width(t), 0)), inner) + b.TopRight + "\n")
	for _, l := range lines {
		sb.WriteString(b.Left + " " + Fit(l, inner-2) + " " + b.Right + "\n")
	}
	sb.WriteString(b.BottomLeft + strings.Repeat(b.Bottom, inner) + b.BottomRight)
	return sb.String()
}

// Count formats n with thousands separators.
func Count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// Short formats n compactly: 950, 3.1k, 2.1M.
func Short(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprint(n)
	case n < 1_000_000:
		return trim1(float64(n)/1e3) + "k"
	case n < 1_000_000_000:
		return trim1(float64(n)/1e6) + "M"
	}
	return trim1(float64(n)/1e9) + "G"
}

func trim1(f float64) string {
	if f >= 100 {
		return fmt.Sprintf("%.0f", f)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0")
}

// Bytes formats a size: 512 B, 1.8 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Dur formats a duration for a column: 0.4s, 48s, 3m12s, 2h14m.
func Dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// Ago formats how long before now t was: "0.4s ago", "never" for zero.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return Dur(now.Sub(t)) + " ago"
}

// Clock formats elapsed time as 00:00:41.
func Clock(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// Bar draws a progress bar of width w.
func Bar(done, total int64, w int, full, empty string) string {
	if total <= 0 {
		total = 1
	}
	n := int(int64(w) * min(done, total) / total)
	return "[" + strings.Repeat(full, n) + strings.Repeat(empty, w-n) + "]"
}

// Spark draws values as a sparkline of width w (the last w values).
func Spark(values []float64, w int, levels []string) string {
	if len(values) > w {
		values = values[len(values)-w:]
	}
	peak := 0.0
	for _, v := range values {
		peak = max(peak, v)
	}
	var sb strings.Builder
	for range w - len(values) {
		sb.WriteString(" ")
	}
	for _, v := range values {
		i := 0
		if peak > 0 {
			i = int(v / peak * float64(len(levels)-1))
		}
		sb.WriteString(levels[i])
	}
	return sb.String()
}

// Width is the display width of s (escape sequences ignored).
func Width(s string) int { return lipgloss.Width(s) }

// Rule is a horizontal rule of exactly w cells with a title: "─ title ───".
func Rule(hrule, title string, w int) string {
	if title == "" {
		return strings.Repeat(hrule, max(w, 0))
	}
	head := hrule + " " + title + " "
	if n := lipgloss.Width(head); n < w {
		return head + strings.Repeat(hrule, w-n)
	}
	return Fit(head, w)
}
