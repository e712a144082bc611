// Package screen is the contract between the TUI's root model and its
// screens (soft-serve's component shape): Init/Update/View plus key maps
// for help, and what every screen shares: the environment, text helpers,
// the confirmation prompts and a one-line input.
package screen

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/core/config"
	"pgreplica/core/who"
	"pgreplica/tui/theme"
)

// Screen is one view of the TUI. View renders exactly into w x h.
type Screen interface {
	Init() tea.Cmd
	Update(msg tea.Msg) (Screen, tea.Cmd)
	View(w, h int) string
	// ShortHelp is the footer's keys; Help the groups of the ? overlay.
	ShortHelp() []key.Binding
	Help() []HelpGroup
	// Capturing is true while a text input or a prompt has the keyboard:
	// single-letter global keys are then off.
	Capturing() bool
}

// HelpGroup is one titled column of the help overlay.
type HelpGroup struct {
	Title string
	Keys  []key.Binding
}

// Env is what every screen shares.
type Env struct {
	Theme    *theme.Theme
	Config   *config.Config
	ReadOnly bool
	// Now is the clock (fixed in golden tests).
	Now func() time.Time
	// Log receives the TUI's own records (audit of actions); it goes to the
	// log ring, never to the terminal.
	Log *slog.Logger
	// Who, when set, is the user of a session served over SSH: the header
	// shows it and Audit logs it instead of this process's user.
	Who *Who
}

// Who is the user of a TUI session served over SSH.
type Who struct {
	User   string // the SSH login name
	Remote string // the client's address, host:port
	Key    string // the key's SHA256 fingerprint
	// Comment is the key's comment in its authorized_keys file.
	Comment string
}

// Audit logs an action taken in the TUI with who did it.
func (e *Env) Audit(action string, args ...any) {
	if e.Log == nil {
		return
	}
	if w := e.Who; w != nil {
		args = append(args, "user", w.User, "remote", w.Remote, "key", w.Key, "key_comment", w.Comment, "via", "ssh", "read_only", e.ReadOnly)
		e.Log.Info(action, args...)
		return
	}
	args = append(args, "user", who.User())
	if ssh := os.Getenv("SSH_CONNECTION"); ssh != "" {
		args = append(args, "ssh", ssh)
	}
	e.Log.Info(action, args...)
}

// Operator names who acts in this TUI, for what the databases record (a
// skipped event): the SSH user and key, or the local user.
func (e *Env) Operator() string {
	if w := e.Who; w != nil {
		return fmt.Sprintf("%s (ssh %s, key %s)", w.User, w.Remote, w.Key)
	}
	return who.Local() + " (tui)"
}

// Level says how a flash line reads.
type Level int

// Flash levels.
const (
	Info Level = iota
	Good
	Warning
	Bad
)

// FlashMsg asks the root to show a line on the status row for a few seconds.
type FlashMsg struct {
	Text  string
	Level Level
}

// Flash returns a command that shows text.
func Flash(level Level, text string) tea.Cmd {
	return func() tea.Msg { return FlashMsg{Text: text, Level: level} }
}

// TickMsg is the root's one-second refresh tick, forwarded to every screen.
type TickMsg struct{ At time.Time }

// SwitchMsg asks the root to show screen N (0-based).
type SwitchMsg struct{ Index int }

// Bindings used by several screens.
var (
	Up       = key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("j/k ↑/↓", "move"))
	Down     = key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("j/k", "move"))
	Top      = key.NewBinding(key.WithKeys("g", "home"), key.WithHelp("g/G", "top/bottom"))
	Bottom   = key.NewBinding(key.WithKeys("G", "end"), key.WithHelp("G", "bottom"))
	HalfDown = key.NewBinding(key.WithKeys("ctrl+d", "pgdown"), key.WithHelp("ctrl+d/u", "half page"))
	HalfUp   = key.NewBinding(key.WithKeys("ctrl+u", "pgup"), key.WithHelp("ctrl+u", "half page up"))
	Filter   = key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter"))
	Sort     = key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort"))
	Refresh  = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh"))
	Enter    = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail"))
	Back     = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))
)

// ShortKey is b with a shorter description, for a key line (the help keeps
// the whole one).
func ShortKey(b key.Binding, desc string) key.Binding {
	b.SetHelp(b.Help().Key, desc)
	return b
}

// MoveCursor applies the list movement keys to cursor in a list of n rows
// shown page rows at a time; ok is false when msg is not a movement key.
func MoveCursor(msg tea.KeyPressMsg, cursor, n, page int) (int, bool) {
	switch {
	case key.Matches(msg, Up):
		cursor--
	case key.Matches(msg, Down):
		cursor++
	case key.Matches(msg, Top):
		cursor = 0
	case key.Matches(msg, Bottom):
		cursor = n - 1
	case key.Matches(msg, HalfDown):
		cursor += max(page/2, 1)
	case key.Matches(msg, HalfUp):
		cursor -= max(page/2, 1)
	default:
		return cursor, false
	}
	if cursor >= n {
		cursor = n - 1
	}
	if cursor < 0 {
		cursor = 0
	}
	return cursor, true
}
