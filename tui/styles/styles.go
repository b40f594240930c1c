// Package styles holds the TUI's semantic styles. Components use these
// names, never colours, so the look changes in one place and degrades to 16
// colours or none (NO_COLOR) through the renderer's colour profile.
package styles

import (
	"charm.land/huh/v2"
	"charm.land/lipgloss/v2"

	"github.com/btfu/btfu/store"
)

// Styles is every style the TUI uses, by meaning.
type Styles struct {
	Title    lipgloss.Style
	Header   lipgloss.Style
	OK       lipgloss.Style
	Warn     lipgloss.Style
	Error    lipgloss.Style
	Muted    lipgloss.Style
	Selected lipgloss.Style
	// Covered and Gap draw the coverage timeline; Marker base backups.
	Covered lipgloss.Style
	Gap     lipgloss.Style
	Marker  lipgloss.Style
	Input   lipgloss.Style
}

// Default uses the 16 ANSI colours, which every terminal over SSH shows.
func Default() Styles {
	return Styles{
		Title:    lipgloss.NewStyle().Bold(true),
		Header:   lipgloss.NewStyle().Bold(true).Underline(true),
		OK:       lipgloss.NewStyle().Foreground(lipgloss.Color("2")),
		Warn:     lipgloss.NewStyle().Foreground(lipgloss.Color("3")),
		Error:    lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		Muted:    lipgloss.NewStyle().Foreground(lipgloss.Color("8")),
		Selected: lipgloss.NewStyle().Reverse(true),
		Covered:  lipgloss.NewStyle().Foreground(lipgloss.Color("2")),
		Gap:      lipgloss.NewStyle().Foreground(lipgloss.Color("1")),
		Marker:   lipgloss.NewStyle().Foreground(lipgloss.Color("6")).Bold(true),
		Input:    lipgloss.NewStyle().Bold(true),
	}
}

// State picks the style of a source state.
func (s Styles) State(state string) lipgloss.Style {
	switch state {
	case store.StateStreaming:
		return s.OK
	case store.StateError, store.StateReconnecting:
		return s.Error
	case store.StatePaused, store.StateBackingUp, store.StateNew, store.StateRegistered, store.StateStarting:
		return s.Warn
	}
	return s.Muted
}

// Form is the theme of the embedded huh forms, built from the same
// semantic styles: the focused field is marked by a bar on its left, its
// title bold, errors in the error style, hints muted.
func (s Styles) Form() huh.Theme {
	return huh.ThemeFunc(func(isDark bool) *huh.Styles {
		t := huh.ThemeBase(isDark)
		f := &t.Focused
		f.Title = s.Input
		f.Description = s.Muted
		f.ErrorIndicator = s.Error.SetString(" *")
		f.ErrorMessage = s.Error.SetString("!")
		f.SelectSelector = s.Marker.SetString("> ")
		f.SelectedOption = s.OK
		f.TextInput.Placeholder = s.Muted
		f.TextInput.Prompt = s.Marker
		t.Blurred = t.Focused
		t.Blurred.Base = t.Focused.Base.BorderStyle(lipgloss.HiddenBorder())
		t.Blurred.Title = s.Muted
		t.Blurred.SelectSelector = lipgloss.NewStyle().SetString("  ")
		t.Group.Title = s.Header
		t.Group.Description = s.Muted
		return t
	})
}
