package logpane

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"pgreplica/tui/screen"
)

// Screen is the Log tab: the pane over the whole body.
type Screen struct {
	env   *screen.Env
	Pane  *Model
	pause key.Binding
}

// NewScreen makes the Log tab.
func NewScreen(env *screen.Env) *Screen {
	s := &Screen{env: env, Pane: New(env.Theme),
		pause: key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause"))}
	s.Pane.SetCursor(true)
	return s
}

// Init does nothing.
func (s *Screen) Init() tea.Cmd { return nil }

// Capturing is true while searching.
func (s *Screen) Capturing() bool { return s.Pane.Searching() }

// Update handles a message.
func (s *Screen) Update(msg tea.Msg) (screen.Screen, tea.Cmd) {
	switch msg := msg.(type) {
	case screen.LogMsg:
		s.Pane.Add(msg.Records)
	case tea.KeyPressMsg:
		if key.Matches(msg, s.pause) && !s.Pane.Searching() {
			s.Pane.paused = !s.Pane.paused
			return s, nil
		}
		_, cmd := s.Pane.Update(msg, true)
		return s, cmd
	}
	return s, nil
}

// Detail is the selected log record, whole.
func (s *Screen) Detail() (string, []string, bool) { return s.Pane.Detail() }

// View renders the pane.
func (s *Screen) View(w, h int) string { return s.Pane.View(w, h) }

// ShortHelp is the footer.
func (s *Screen) ShortHelp() []key.Binding {
	k := s.Pane.Keys
	return []key.Binding{screen.ShortKey(k.Detail, "detail"), screen.ShortKey(k.Wrap, "wrap"), screen.ShortKey(k.Level, "level"), k.Search, screen.ShortKey(k.Next, "next"),
		screen.ShortKey(k.Follow, "follow"), screen.ShortKey(k.Up, "move"), s.pause, k.Times}
}

// Help is the overlay's part.
func (s *Screen) Help() []screen.HelpGroup {
	k := s.Pane.Keys
	g := s.Pane.HelpGroup()
	g.Keys = append([]key.Binding{k.Up, k.Detail}, append(g.Keys, s.pause)...)
	return []screen.HelpGroup{g}
}
