package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/tui/styles"
)

// register is the form that adds a source: a huh form (name, DSN, tables
// to exclude, schedule) checked field by field with config.toml's own
// rules, a probe of the prospective source with its plan, then (on
// confirmation) a [[source]] block appended to config.toml and a reload
// that starts it.
type register struct {
	ctx     context.Context
	eng     Engine
	st      styles.Styles
	w, h    int
	form    *form // nil while probing and on the report
	name    string
	dsn     string
	exclude string
	sched   string
	probing bool
	report  *probe.Report
	block   config.SourceBlock
	problem string
	keys    registerKeys
}

type registerProbedMsg struct {
	block config.SourceBlock
	r     *probe.Report
	err   error
}

type registeredMsg struct{ err error }

func newRegisterScreen(c *common) Component {
	r := &register{ctx: c.ctx, eng: c.eng, st: c.styles, w: 80, h: 20}
	r.keys = newRegisterKeys()
	r.form = r.newForm()
	return r
}

// newRegister is the register form factory the root uses.
var newRegister = newRegisterScreen

// newForm builds the form over the current values (kept when the user
// comes back from the probe's report to edit).
func (r *register) newForm() *form {
	return newForm(r.st, r.w, r.formHeight(),
		huh.NewInput().Title("Source name:").Placeholder("orders (a-z 0-9 _ -)").Value(&r.name).Validate(r.checkName),
		huh.NewInput().Title("Connection string:").Placeholder("postgres://btfu@db.example.com:5432/orders?sslmode=require").Value(&r.dsn).Validate(checkSourceDSN),
		huh.NewInput().Title("Tables to leave out (optional):").Placeholder("public.sessions, audit.*").Value(&r.exclude).Validate(checkExclude),
		huh.NewInput().Title("Base backup schedule:").Placeholder("0 3 * * * (the default), @hourly, or off").Value(&r.sched).Validate(checkSchedule),
	)
}

func (r *register) formHeight() int { return max(r.h-4, 8) }

func (r *register) Init() tea.Cmd { return r.form.Init() }

func (r *register) Typing() bool { return r.report == nil }

func (r *register) SetSize(w, h int) {
	r.w, r.h = w, h
	r.form.size(w, r.formHeight())
}

func (r *register) ShortHelp() []key.Binding {
	switch {
	case r.report != nil:
		return []key.Binding{r.keys.Confirm, r.keys.Back}
	case r.form != nil:
		return r.form.help()
	}
	return []key.Binding{r.keys.Back}
}
func (r *register) FullHelp() [][]key.Binding { return [][]key.Binding{r.ShortHelp()} }

// sourceBlock is the [[source]] the form describes.
func (r *register) sourceBlock() config.SourceBlock {
	return config.SourceBlock{Name: strings.TrimSpace(r.name), DSN: strings.TrimSpace(r.dsn), Schedule: strings.TrimSpace(r.sched), ExcludeTables: splitList(r.exclude)}
}

func splitList(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// checkBlock runs config.toml's own checks on b and returns the first
// problem without its key (the form names the field).
func checkBlock(b config.SourceBlock) error {
	_, err := config.Parse("form", []byte(b.Text()))
	if err == nil {
		return nil
	}
	var p *config.Problems
	if errors.As(err, &p) && len(p.Items) > 0 {
		msg := p.Items[0]
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "source") {
			msg = msg[i+2:]
		}
		return errors.New(msg)
	}
	return err
}

// A field is checked with good values in the other fields, so only its
// own problems show.
const (
	okName = "x"
	okDSN  = "postgres://localhost/x"
)

func (r *register) checkName(v string) error {
	v = strings.TrimSpace(v)
	if err := checkBlock(config.SourceBlock{Name: v, DSN: okDSN}); err != nil {
		return err
	}
	if cfg := r.eng.Config(); cfg != nil {
		for _, s := range cfg.Sources {
			if s.Name == v {
				return fmt.Errorf("a source named %q exists already; choose another name", v)
			}
		}
	}
	return nil
}

func checkSourceDSN(v string) error {
	return checkBlock(config.SourceBlock{Name: okName, DSN: strings.TrimSpace(v)})
}

func checkExclude(v string) error {
	return checkBlock(config.SourceBlock{Name: okName, DSN: okDSN, ExcludeTables: splitList(v)})
}

func checkSchedule(v string) error {
	return checkBlock(config.SourceBlock{Name: okName, DSN: okDSN, Schedule: strings.TrimSpace(v)})
}

func (r *register) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case formSubmittedMsg:
		if r.form != nil && msg.form == r.form.Form {
			return r.submit()
		}
		return r, nil
	case formCancelledMsg:
		if r.form != nil && msg.form == r.form.Form {
			return r, closeWith("")
		}
		return r, nil
	case registerProbedMsg:
		if !r.probing {
			return r, nil // the user went back to the form meanwhile
		}
		r.probing = false
		if msg.err != nil {
			r.problem = msg.err.Error()
			return r.edit()
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
		if r.form == nil {
			return r.reportKey(msg)
		}
	}
	if r.form != nil {
		return r, r.form.update(msg)
	}
	return r, nil
}

// reportKey answers keys on the probe's report (or while probing).
func (r *register) reportKey(msg tea.KeyPressMsg) (Component, tea.Cmd) {
	switch {
	case key.Matches(msg, r.keys.Back):
		return r.edit()
	case r.report != nil && key.Matches(msg, r.keys.Confirm):
		if r.report.Failed() {
			r.problem = "the probe found failures; fix them (see fix: lines) or change the form"
			return r, nil
		}
		return r, r.appendCmd()
	}
	return r, nil
}

// edit goes back to the form, keeping what was typed.
func (r *register) edit() (Component, tea.Cmd) {
	r.report, r.probing = nil, false
	r.form = r.newForm()
	return r, r.form.Init()
}

// submit checks the whole block through config.Parse (so defaults and
// validation are the file's own) and probes it.
func (r *register) submit() (Component, tea.Cmd) {
	b := r.sourceBlock()
	if err := r.checkName(b.Name); err != nil {
		r.problem = err.Error()
		return r.edit()
	}
	_, err := config.Parse("form", []byte(b.Text()))
	if err != nil {
		r.problem = strings.ReplaceAll(err.Error(), "form: ", "")
		return r.edit()
	}
	r.form, r.problem, r.probing = nil, "", true
	return r, r.probeCmd(b)
}

// probeCmd probes the prospective source through the engine (which may
// run in another process): the register form's one call into probe.
func (r *register) probeCmd(b config.SourceBlock) tea.Cmd {
	ctx, eng := r.ctx, r.eng
	return func() tea.Msg {
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
	switch {
	case r.form != nil:
		b.WriteString(r.form.view(r.st, r.w))
		b.WriteString(wrapStyled(r.st.Muted, "A password in the connection string is written to config.toml; prefer password_file or ${ENV} there.", r.w, 0) + "\n")
	case r.probing:
		b.WriteString(wrapStyled(r.st.Muted, "probing "+redact.DSN(r.dsn)+"…", r.w, 8) + "\n")
	case r.report != nil:
		rep := r.report
		b.WriteString(reportHead(rep, r.w) + "\n")
		b.WriteString(strings.Join(reportLines(r.st, rep, r.w, true), "\n") + "\n")
		if rep.Failed() {
			b.WriteString(wrapStyled(r.st.Error, "The probe found failures: fix them first (esc to edit the form).", r.w, 0) + "\n")
		} else {
			b.WriteString(wrap("Press y to append this source to config.toml and start it, esc to edit.", r.w, 0) + "\n")
		}
	}
	if r.problem != "" {
		b.WriteString(wrapStyled(r.st.Error, "! "+r.problem, r.w, 2) + "\n")
	}
	return b.String()
}
