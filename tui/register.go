package tui

import (
	"context"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/tui/styles"
)

// register is the form that adds a source: fields, a probe of the
// prospective source with its plan, then (on confirmation) a [[source]]
// block appended to config.toml and a reload that starts it.
type register struct {
	ctx     context.Context
	eng     Engine
	st      styles.Styles
	w, h    int
	fields  []textinput.Model
	focus   int
	probing bool
	report  *probe.Report
	block   config.SourceBlock
	problem string
	keys    struct{ Next, Prev, Submit, Confirm, Back key.Binding }
}

type registerProbedMsg struct {
	block config.SourceBlock
	r     *probe.Report
	err   error
}

type registeredMsg struct{ err error }

var registerLabels = []string{"name", "dsn", "exclude tables", "schedule"}

func newRegisterScreen(ctx context.Context, eng Engine, st styles.Styles) Component {
	r := &register{ctx: ctx, eng: eng, st: st, w: 80, h: 20}
	placeholders := []string{"orders (a-z 0-9 _ -)", "postgres://btfu@db.example.com:5432/orders?sslmode=require", "public.sessions, audit.* (optional)", "0 3 * * * (default; or off)"}
	for i := range registerLabels {
		in := textinput.New()
		in.Prompt = pad(registerLabels[i]+":", 16)
		in.Placeholder = placeholders[i]
		in.SetWidth(50)
		r.fields = append(r.fields, in)
	}
	r.fields[0].Focus()
	r.keys.Next = key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab", "next field"))
	r.keys.Prev = key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab", "previous"))
	r.keys.Submit = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "probe"))
	r.keys.Confirm = key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "add to config.toml"))
	r.keys.Back = back
	return r
}

// newRegister is the register form factory the root uses.
var newRegister = newRegisterScreen

func (r *register) Init() tea.Cmd { return textinput.Blink }

func (r *register) Typing() bool { return r.report == nil }

func (r *register) SetSize(w, h int) {
	r.w, r.h = w, h
	for i := range r.fields {
		r.fields[i].SetWidth(max(w-20, 20))
	}
}

func (r *register) ShortHelp() []key.Binding {
	if r.report != nil {
		return []key.Binding{r.keys.Confirm, r.keys.Back}
	}
	return []key.Binding{r.keys.Next, r.keys.Submit, r.keys.Back}
}
func (r *register) FullHelp() [][]key.Binding { return [][]key.Binding{r.ShortHelp()} }

func (r *register) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case registerProbedMsg:
		r.probing = false
		if msg.err != nil {
			r.problem = msg.err.Error()
			return r, nil
		}
		r.report, r.block, r.problem = msg.r, msg.block, ""
		return r, nil
	case registeredMsg:
		if msg.err != nil {
			r.problem = msg.err.Error()
			return r, nil
		}
		return r, closeWith("source " + r.block.Name + " added to config.toml; it starts now")
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, r.keys.Back):
			if r.report != nil {
				r.report = nil
				return r, nil
			}
			return r, closeWith("")
		case r.report != nil && key.Matches(msg, r.keys.Confirm):
			if r.report.Failed() {
				r.problem = "the probe found failures; fix them (see fix: lines) or change the form"
				return r, nil
			}
			return r, r.appendCmd()
		case r.report != nil:
			return r, nil
		case key.Matches(msg, r.keys.Next):
			r.move(1)
			return r, nil
		case key.Matches(msg, r.keys.Prev):
			r.move(-1)
			return r, nil
		case key.Matches(msg, r.keys.Submit):
			return r.submit()
		}
	}
	if r.report == nil {
		var cmd tea.Cmd
		r.fields[r.focus], cmd = r.fields[r.focus].Update(msg)
		return r, cmd
	}
	return r, nil
}

func (r *register) move(d int) {
	r.fields[r.focus].Blur()
	r.focus = (r.focus + d + len(r.fields)) % len(r.fields)
	r.fields[r.focus].Focus()
}

// submit checks the form by building the source through config.Parse (so
// defaults and validation are the file's own) and probes it.
func (r *register) submit() (Component, tea.Cmd) {
	b := config.SourceBlock{Name: strings.TrimSpace(r.fields[0].Value()), DSN: strings.TrimSpace(r.fields[1].Value()), Schedule: strings.TrimSpace(r.fields[3].Value())}
	for _, t := range strings.Split(r.fields[2].Value(), ",") {
		if t = strings.TrimSpace(t); t != "" {
			b.ExcludeTables = append(b.ExcludeTables, t)
		}
	}
	_, err := config.Parse("form", []byte(b.Text()))
	if err != nil {
		r.problem = strings.ReplaceAll(err.Error(), "form: ", "")
		return r, nil
	}
	for _, s := range r.eng.Config().Sources {
		if s.Name == b.Name {
			r.problem = fmt.Sprintf("a source named %q exists already", b.Name)
			return r, nil
		}
	}
	r.problem, r.probing = "", true
	ctx, eng := r.ctx, r.eng
	return r, func() tea.Msg {
		rep, err := eng.ProbeSource(ctx, b)
		return registerProbedMsg{b, rep, err}
	}
}

func (r *register) appendCmd() tea.Cmd {
	ctx, eng, b := r.ctx, r.eng, r.block
	return func() tea.Msg {
		return registeredMsg{eng.AddSource(ctx, b)}
	}
}

func (r *register) View() string {
	var b strings.Builder
	b.WriteString(r.st.Header.Render("Register a source") + "\n")
	if r.report == nil {
		for _, f := range r.fields {
			b.WriteString(f.View() + "\n")
		}
		b.WriteString(r.st.Muted.Render("A password in the DSN is written to config.toml; prefer password_file or ${ENV} there.") + "\n")
		if r.probing {
			b.WriteString(r.st.Muted.Render("probing "+redact.DSN(r.fields[1].Value())+"…") + "\n")
		}
	} else {
		rep := r.report
		b.WriteString(fmt.Sprintf("%s · PostgreSQL %s · %s\n", rep.Target, rep.ServerVersion, rep.Provider))
		for _, c := range rep.Checks {
			if c.Status == probe.OK || c.Status == probe.Info {
				continue
			}
			st := r.st.Warn
			if c.Status == probe.Fail {
				st = r.st.Error
			}
			b.WriteString(st.Render(fmt.Sprintf("%-4s %s: %s", c.Status, c.ID, c.Finding)) + "\n")
			if c.Fix != "" {
				b.WriteString("     " + r.st.Muted.Render("fix: "+c.Fix) + "\n")
			}
		}
		pl := rep.Plan
		b.WriteString(fmt.Sprintf("plan: publication %s %s (%d tables), slot %s, DDL %s\n", pl.Publication, pl.PublicationForm, len(pl.Tables), pl.Slot,
			map[bool]string{true: "captured", false: "derived"}[pl.DDLCapture]))
		if rep.Failed() {
			b.WriteString(r.st.Error.Render("The probe found failures: fix them first (esc to edit the form).") + "\n")
		} else {
			b.WriteString("Press y to append this source to config.toml and start it, esc to edit.\n")
		}
	}
	if r.problem != "" {
		b.WriteString(r.st.Error.Render("! "+r.problem) + "\n")
	}
	return b.String()
}
