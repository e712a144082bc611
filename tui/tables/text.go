package tables

import (
	"github.com/charmbracelet/x/ansi"
)

func stripANSI(s string) string { return ansi.Strip(s) }

func lenOf(s string) int { return ansi.StringWidth(s) }
