package tui

import "charm.land/bubbles/v2/key"

// KeyMap is every key the dashboard answers, shown by the help view.
// Screens have their own maps next to them.
type KeyMap struct {
	Up       key.Binding
	Down     key.Binding
	Detail   key.Binding
	Timeline key.Binding
	Restore  key.Binding
	Register key.Binding
	Log      key.Binding
	Backup   key.Binding
	Pause    key.Binding
	Refresh  key.Binding
	Help     key.Binding
	Quit     key.Binding
}

// DefaultKeyMap returns the keys; vim keys work alongside the arrows.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Detail:   key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "source detail/probe")),
		Timeline: key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "coverage timeline")),
		Restore:  key.NewBinding(key.WithKeys("R"), key.WithHelp("R", "restore wizard")),
		Register: key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "register a source")),
		Log:      key.NewBinding(key.WithKeys("L"), key.WithHelp("L", "event log")),
		Backup:   key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "backup now")),
		Pause:    key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause/resume")),
		Refresh:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh")),
		Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp implements help.KeyMap.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Detail, k.Timeline, k.Restore, k.Backup, k.Pause, k.Help, k.Quit}
}

// FullHelp implements help.KeyMap.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Detail, k.Timeline}, {k.Restore, k.Register, k.Log}, {k.Backup, k.Pause, k.Refresh, k.Help, k.Quit}}
}

// back is the key every screen uses to return to the dashboard.
var back = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))
