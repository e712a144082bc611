// Package theme is the TUI's look: a semantic 16-colour palette built once
// into styles, a monochrome variant for NO_COLOR, --color=never and
// TERM=dumb, and glyphs with an ASCII fallback.
package theme

import (
	"strings"

	"charm.land/lipgloss/v2"
)

// Glyphs are the symbols the screens draw.
type Glyphs struct {
	Check, Cross, Cursor, Dot, Mid, Ellipsis string
	HRule, VRule                             string
	Spark                                    []string // eight levels, lowest first
	Bar, BarEmpty                            string
	Spinner                                  []string
}

// Unicode glyphs, for terminals that draw them.
var Unicode = Glyphs{
	Check: "✓", Cross: "✗", Cursor: "▸", Dot: "●", Mid: "·", Ellipsis: "…",
	HRule: "─", VRule: "│",
	Spark: []string{"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"},
	Bar:   "#", BarEmpty: ".",
	Spinner: []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"},
}

// ASCII glyphs, for TERM=dumb, non-UTF-8 locales and --ascii.
var ASCII = Glyphs{
	Check: "+", Cross: "x", Cursor: ">", Dot: "*", Mid: "-", Ellipsis: "~",
	HRule: "-", VRule: "|",
	Spark: []string{"_", ".", ",", "-", "~", "=", "*", "#"},
	Bar:   "#", BarEmpty: ".",
	Spinner: []string{"|", "/", "-", "\\"},
}

// Theme is the set of styles every screen uses. Colour only reinforces a
// word: every state is also written out.
type Theme struct {
	Mono   bool
	Glyphs Glyphs

	Header    lipgloss.Style // row 1
	Tab       lipgloss.Style
	TabActive lipgloss.Style
	Rule      lipgloss.Style
	Title     lipgloss.Style // column heads, pane titles
	Selected  lipgloss.Style // the cursor row
	Dim       lipgloss.Style
	OK        lipgloss.Style
	Warn      lipgloss.Style
	Err       lipgloss.Style
	Info      lipgloss.Style
	Key       lipgloss.Style // keys in help
	Box       lipgloss.Style // confirmation boxes
}

// New builds a theme. mono drops colour (reverse and bold only).
func New(mono, ascii bool) *Theme {
	t := &Theme{Mono: mono, Glyphs: Unicode}
	if ascii {
		t.Glyphs = ASCII
	}
	s := lipgloss.NewStyle
	if mono {
		t.Header = s().Bold(true)
		t.Tab = s()
		t.TabActive = s().Reverse(true)
		t.Rule = s()
		t.Title = s().Bold(true)
		t.Selected = s().Reverse(true)
		t.Dim = s()
		t.OK = s()
		t.Warn = s().Bold(true)
		t.Err = s().Bold(true)
		t.Info = s()
		t.Key = s().Bold(true)
		t.Box = s().Bold(true)
		return t
	}
	// The 16 ANSI colours by index: the terminal's theme decides the RGB.
	var (
		red    = lipgloss.Red
		green  = lipgloss.Green
		yellow = lipgloss.Yellow
		blue   = lipgloss.Blue
		cyan   = lipgloss.Cyan
		grey   = lipgloss.BrightBlack
	)
	t.Header = s().Bold(true).Foreground(cyan)
	t.Tab = s().Foreground(grey)
	t.TabActive = s().Bold(true).Reverse(true)
	t.Rule = s().Foreground(grey)
	t.Title = s().Bold(true)
	t.Selected = s().Reverse(true)
	t.Dim = s().Foreground(grey)
	t.OK = s().Foreground(green)
	t.Warn = s().Foreground(yellow)
	t.Err = s().Bold(true).Foreground(red)
	t.Info = s().Foreground(blue)
	t.Key = s().Bold(true)
	t.Box = s().Foreground(yellow)
	return t
}

// Detect decides monochrome and ASCII from the --color flag (auto, always,
// never) and the environment (NO_COLOR, TERM, LANG/LC_*), read through
// getenv so tests can set it.
func Detect(color string, getenv func(string) string) (mono, ascii bool) {
	term := getenv("TERM")
	switch color {
	case "never":
		mono = true
	case "always":
		mono = false
	default:
		mono = getenv("NO_COLOR") != "" || term == "dumb" || term == ""
	}
	ascii = term == "dumb" || !utf8Locale(getenv)
	return mono, ascii
}

func utf8Locale(getenv func(string) string) bool {
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if v := getenv(k); v != "" {
			v = strings.ToLower(v)
			return strings.Contains(v, "utf-8") || strings.Contains(v, "utf8")
		}
	}
	// No locale at all: most terminals today are UTF-8; ssh often drops LANG.
	return true
}

// StateStyle is the style of a state word: OK/STREAMING green, CATCHUP
// and the like yellow, errors red.
func (t *Theme) StateStyle(word string) lipgloss.Style {
	switch strings.ToUpper(word) {
	case "OK", "STREAMING", "CAUGHT UP", "REPLICATING", "RUNNING", "PASS", "DONE", "INSTALLED":
		return t.OK
	case "ERROR", "STOPPED", "FAIL", "MISSING", "NO PK", "UNREACHABLE", "DOWN":
		return t.Err
	case "CATCHUP", "BEHIND", "COPYING", "RETRYING", "DISABLED", "WARN", "PAUSED", "STARTING":
		return t.Warn
	}
	return t.Dim
}
