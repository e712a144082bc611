package pg

import "strings"

// Setting is one session setting.
type Setting struct{ Name, Value string }

// ExactText are the session settings under which every value's text form is
// exact and the same on every server, whatever the servers' defaults:
// timestamps in ISO and UTC, intervals in postgres style, floats with all
// their digits, bytea in hex. Copy, apply, verify and the tests' row
// comparison all use this one list.
var ExactText = []Setting{
	{"DateStyle", "ISO"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
	{"TimeZone", "UTC"},
}

// SetSQL is the SET statements for settings; local makes them SET LOCAL
// (for the current transaction only).
func SetSQL(local bool, settings ...Setting) string {
	var b strings.Builder
	for i, s := range settings {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("SET ")
		if local {
			b.WriteString("LOCAL ")
		}
		b.WriteString(s.Name + " = '" + strings.ReplaceAll(s.Value, "'", "''") + "'")
	}
	return b.String()
}

// ExactTextSQL is SetSQL for ExactText followed by more settings.
func ExactTextSQL(local bool, more ...Setting) string {
	return SetSQL(local, append(append([]Setting(nil), ExactText...), more...)...)
}
