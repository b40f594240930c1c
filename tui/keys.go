package tui

import (
	"charm.land/bubbles/v2/key"
	"charm.land/huh/v2"
)

// KeyMap is every key the dashboard answers, shown by the help view. Each
// screen's own keys are below it: every binding of the TUI is in this file.
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

type detailKeys struct{ Probe, Backup, Pause, Up, Down, Back key.Binding }

func newDetailKeys() detailKeys {
	return detailKeys{
		Probe:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "re-probe")),
		Backup: key.NewBinding(key.WithKeys("b"), key.WithHelp("b", "backup now")),
		Pause:  key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause/resume")),
		Up:     key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "scroll")),
		Down:   key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "scroll")),
		Back:   back,
	}
}

type logKeys struct{ Source, Level, Up, Down, Back key.Binding }

func newLogKeys() logKeys {
	return logKeys{
		Source: key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "filter source")),
		Level:  key.NewBinding(key.WithKeys("l"), key.WithHelp("l", "min level")),
		Up:     key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "older")),
		Down:   key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "newer")),
		Back:   back,
	}
}

type registerKeys struct{ Confirm, Back key.Binding }

func newRegisterKeys() registerKeys {
	return registerKeys{
		Confirm: key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "add to config.toml")),
		Back:    back,
	}
}

type timelineKeys struct{ Left, Right, ZoomIn, ZoomOut, Restore, Back key.Binding }

func newTimelineKeys() timelineKeys {
	return timelineKeys{
		Left:    key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("←/h", "earlier")),
		Right:   key.NewBinding(key.WithKeys("right", "l"), key.WithHelp("→/l", "later")),
		ZoomIn:  key.NewBinding(key.WithKeys("+", "="), key.WithHelp("+", "zoom in")),
		ZoomOut: key.NewBinding(key.WithKeys("-"), key.WithHelp("-", "zoom out")),
		Restore: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "restore to the cursor")),
		Back:    back,
	}
}

type wizardKeys struct{ Next, Back, Up, Down, Stop, Done key.Binding }

func newWizardKeys() wizardKeys {
	return wizardKeys{
		Next: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next")),
		Back: back,
		Up:   key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑", "up")),
		Down: key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓", "down")),
		Stop: key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "stop the restore (asks first)")),
		Done: key.NewBinding(key.WithKeys("enter", "esc"), key.WithHelp("enter", "back to the dashboard")),
	}
}

// formKeys is huh's key map with esc as "cancel": ctrl+c stays the root's
// (quit, asking first during a restore).
func formKeys() *huh.KeyMap {
	km := huh.NewDefaultKeyMap()
	km.Quit = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))
	km.Select.Filter.SetEnabled(false) // esc cancels the form, so no filter to clear
	km.Input.Prev.SetHelp("shift+tab", "previous field")
	return km
}
