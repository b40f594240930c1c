package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"

	"github.com/btfu/btfu/tui/styles"
)

// formSubmittedMsg and formCancelledMsg are what an embedded huh form's
// SubmitCmd and CancelCmd return: the screen that owns form acts on them
// (a message of a form it has since replaced is ignored).
type formSubmittedMsg struct{ form *huh.Form }

type formCancelledMsg struct{ form *huh.Form }

// formKeys is huh's key map with esc as "cancel": ctrl+c stays the root's
// (quit, asking first during a restore).
func formKeys() *huh.KeyMap {
	km := huh.NewDefaultKeyMap()
	km.Quit = key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back"))
	km.Select.Filter.SetEnabled(false) // esc cancels the form, so no filter to clear
	km.Input.Prev.SetHelp("shift+tab", "previous field")
	return km
}

// newForm embeds fields as one huh group in a screen of width w and at
// most h lines: huh draws and validates; submit and cancel come back as
// our own messages; the help line is the root's (formHelp). The caller
// returns f.Init() as a command (it focuses the first field).
func newForm(st styles.Styles, w, h int, fields ...huh.Field) *huh.Form {
	f := huh.NewForm(huh.NewGroup(fields...)).
		WithTheme(st.Form()).
		WithKeyMap(formKeys()).
		WithShowHelp(false).
		WithShowErrors(true)
	f.SubmitCmd = func() tea.Msg { return formSubmittedMsg{f} }
	f.CancelCmd = func() tea.Msg { return formCancelledMsg{f} }
	sizeForm(f, w, h)
	return f
}

// sizeForm fits f to w columns and at most h lines (huh sizes its groups
// from a window size message when no height was set).
func sizeForm(f *huh.Form, w, h int) {
	if f == nil {
		return
	}
	f.WithWidth(max(w, 20))
	f.Update(tea.WindowSizeMsg{Width: max(w, 20), Height: max(h, 3)})
}

// updateForm hands msg to f and returns the updated form.
func updateForm(f *huh.Form, msg tea.Msg) (*huh.Form, tea.Cmd) {
	m, cmd := f.Update(msg)
	if nf, ok := m.(*huh.Form); ok {
		f = nf
	}
	return f, cmd
}

// formHelp is the short help of a screen showing f: the focused field's
// keys, then esc.
func formHelp(f *huh.Form) []key.Binding {
	var out []key.Binding
	for _, b := range f.KeyBinds() {
		if b.Enabled() {
			out = append(out, b)
		}
	}
	return append(out, back)
}
