package tui

import (
	"strings"

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

// form is a huh form embedded in a screen: one group of fields, huh's
// drawing and checks, submit and cancel as our own messages.
type form struct {
	*huh.Form
	fields []huh.Field
	keys   *huh.KeyMap
}

// newForm embeds fields in a screen of width w and at most h lines; the
// help line is the root's (formHelp), the problems ours (formView). The
// caller returns Init() as a command (it focuses the first field).
func newForm(st styles.Styles, w, h int, fields ...huh.Field) *form {
	km := formKeys()
	f := &form{Form: huh.NewForm(huh.NewGroup(fields...)).
		WithTheme(st.Form()).
		WithKeyMap(km).
		WithShowHelp(false).
		WithShowErrors(false), fields: fields, keys: km}
	f.SubmitCmd = func() tea.Msg { return formSubmittedMsg{f.Form} }
	f.CancelCmd = func() tea.Msg { return formCancelledMsg{f.Form} }
	f.size(w, h)
	return f
}

// size fits the form to w columns and at most h lines (huh sizes its
// groups from a window size message when no height was set).
func (f *form) size(w, h int) {
	if f == nil {
		return
	}
	f.WithWidth(max(w, 20))
	f.Form.Update(tea.WindowSizeMsg{Width: max(w, 20), Height: max(h, 3)})
}

// update hands msg to the form. Moving between fields is done here, at
// once: huh moves by a command, so keys typed right after tab (a paste, a
// fast typist, tmux send-keys) would land in the field being left.
func (f *form) update(msg tea.Msg) tea.Cmd {
	if k, ok := msg.(tea.KeyPressMsg); ok && f.State == huh.StateNormal {
		field := f.GetFocusedField()
		switch {
		case key.Matches(k, f.keys.Input.Prev):
			if field == f.fields[0] {
				return nil
			}
			return f.PrevField()
		case key.Matches(k, f.keys.Input.Next):
			field.Blur() // stores the value and checks it
			if field.Error() != nil {
				return field.Focus()
			}
			if field == f.fields[len(f.fields)-1] {
				return f.NextGroup() // the only group: submit
			}
			return f.NextField()
		}
	}
	_, cmd := f.Form.Update(msg)
	return cmd
}

// view draws the form, then what its checks refuse, wrapped to w columns.
func (f *form) view(st styles.Styles, w int) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(f.View(), "\n") + "\n")
	for _, err := range f.Errors() {
		b.WriteString(wrapStyled(st.Error, "! "+err.Error(), w, 2) + "\n")
	}
	return b.String()
}

// help is the short help of a screen showing the form: the focused
// field's keys, then esc.
func (f *form) help() []key.Binding {
	var out []key.Binding
	for _, b := range f.KeyBinds() {
		if b.Enabled() {
			out = append(out, b)
		}
	}
	return append(out, back)
}
