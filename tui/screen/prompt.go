package screen

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/tui/theme"
)

// Prompt is a confirmation. Level 2 (a change that can be undone) is
// confirmed with y alone; anything else cancels, and enter alone does not
// confirm. Level 3 (data loss or divergence) states the consequence and
// the way back, and is confirmed by typing Expect and then enter.
type Prompt struct {
	Level  int
	Title  string
	Body   []string // consequence, way back
	Expect string   // level 3: what must be typed
	Typed  string
	// OnYes runs when confirmed.
	OnYes tea.Cmd
}

// PromptResult is what a key did to a prompt.
type PromptResult int

// Prompt results.
const (
	PromptOpen PromptResult = iota
	PromptConfirmed
	PromptCancelled
)

// Update feeds a key to the prompt.
func (p *Prompt) Update(msg tea.KeyPressMsg) PromptResult {
	if p.Level < 3 {
		if msg.String() == "y" || msg.String() == "Y" {
			return PromptConfirmed
		}
		return PromptCancelled
	}
	switch msg.String() {
	case "esc", "ctrl+c":
		return PromptCancelled
	case "enter":
		if p.Typed == p.Expect {
			return PromptConfirmed
		}
		return PromptOpen
	case "backspace":
		if p.Typed != "" {
			r := []rune(p.Typed)
			p.Typed = string(r[:len(r)-1])
		}
	case "ctrl+u":
		p.Typed = ""
	default:
		if msg.Text != "" {
			p.Typed += msg.Text
		}
	}
	return PromptOpen
}

// View renders the prompt as a box w cells wide.
func (p *Prompt) View(t *theme.Theme, w int) string {
	w = min(w, 66)
	inner := w - 4
	var lines []string
	lines = append(lines, "")
	for _, b := range p.Body {
		lines = append(lines, Wrap(b, inner)...)
	}
	lines = append(lines, "")
	if p.Level >= 3 {
		lines = append(lines, "Type "+p.Expect+" to confirm:  "+p.Typed+"█")
		lines = append(lines, "")
		state := "disabled until it matches"
		if p.Typed == p.Expect {
			state = "matches"
		}
		lines = append(lines, "enter confirm ("+state+") · esc cancel")
	} else {
		lines = append(lines, t.Key.Render("y")+" confirm · any other key cancels (enter does not confirm)")
	}
	return t.Box.Render(Frame(p.Title, lines, w))
}

// Footer is the help line while the prompt is open.
func (p *Prompt) Footer() string {
	if p.Level >= 3 {
		return "type " + p.Expect + " · enter confirm · esc cancel"
	}
	return "y confirm · any other key cancels"
}

// Input is a one-line text input: typing appends, backspace deletes,
// ctrl+u clears; enter and esc are for the owner to act on.
type Input struct {
	Prompt string
	Value  string
	Mask   bool
}

// Update applies a key and reports whether it was consumed.
func (in *Input) Update(msg tea.KeyPressMsg) bool {
	switch msg.String() {
	case "backspace", "ctrl+h":
		if in.Value != "" {
			r := []rune(in.Value)
			in.Value = string(r[:len(r)-1])
		}
		return true
	case "ctrl+u":
		in.Value = ""
		return true
	case "enter", "esc", "tab", "shift+tab", "up", "down":
		return false
	}
	if msg.Text != "" {
		in.Value += msg.Text
		return true
	}
	if msg.String() == "space" {
		in.Value += " "
		return true
	}
	return false
}

// View renders the input with a block cursor when focused.
func (in *Input) View(focused bool) string {
	v := in.Value
	if in.Mask {
		v = strings.Repeat("*", len([]rune(v)))
	}
	if focused {
		v += "█"
	}
	return in.Prompt + v
}

// Tail renders the value (without the prompt) in at most w cells: a value
// too long shows its end, where typing goes, after "…"; the focused input
// has a block cursor.
func (in *Input) Tail(w int, focused bool) string {
	v := in.Value
	if in.Mask {
		v = strings.Repeat("*", len([]rune(v)))
	}
	cursor := ""
	if focused {
		cursor = "█"
	}
	r := []rune(v)
	for len(r) > 0 && lipglossWidth(string(r))+lipglossWidth(cursor) > w {
		r = r[1:]
		if len(r) > 0 && lipglossWidth("…"+string(r))+lipglossWidth(cursor) <= w {
			return "…" + string(r) + cursor
		}
	}
	return string(r) + cursor
}

// Keys of help overlays and prompts, for reuse.
var (
	ConfirmYes = key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "confirm"))
)

// KeyToPrompt hands a key to the open prompt *p: on confirmation it closes
// the prompt and returns its OnYes; on cancellation it closes it and flashes
// that nothing changed; otherwise the prompt stays open.
func KeyToPrompt(p **Prompt, msg tea.KeyPressMsg) tea.Cmd {
	open := *p
	switch open.Update(msg) {
	case PromptConfirmed:
		*p = nil
		return open.OnYes
	case PromptCancelled:
		*p = nil
		return Flash(Info, "cancelled: nothing changed")
	}
	return nil
}

// Asks is the mark of a key whose action asks for confirmation first (in
// key lines and help). It is not "…", which marks cut text.
const Asks = "(asks)"

func lipglossWidth(s string) int { return Width(s) }
