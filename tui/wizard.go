package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/tui/styles"
)

// Wizard steps.
const (
	stepSource = iota
	stepPoint
	stepTarget
	stepPlan
	stepConfirm
	stepRunning
	stepDone
)

// wizard is the guided restore: source, target point, target database
// (checked), the dry-run plan, a typed confirmation, live progress and a
// summary. The restore runs under its own context, cancelled only when the
// user confirms stopping it.
type wizard struct {
	ctx     context.Context
	eng     Engine
	st      styles.Styles
	w, h    int
	step    int
	sources []string
	sel     int
	source  string
	input   textinput.Model
	target  restore.Target
	dsn     string
	info    restore.TargetInfo
	plan    *restore.Plan
	problem string // inline explanation of what is wrong with the input
	working string // a check in progress
	cancel  context.CancelFunc
	prog    chan restore.Progress
	last    restore.Progress
	started time.Time
	sum     restore.Summary
	err     error
	askStop bool
	noOwner bool // typed restore --no-owner
	keys    struct{ Next, Back, Up, Down key.Binding }
}

type targetCheckedMsg struct {
	info restore.TargetInfo
	err  error
}

type wizardPlanMsg struct {
	plan *restore.Plan
	err  error
}

type progressMsg restore.Progress

type restoreDoneMsg struct {
	sum restore.Summary
	err error
}

func newWizardScreen(ctx context.Context, eng Engine, st styles.Styles, source string, at time.Time) Component {
	w := &wizard{ctx: ctx, eng: eng, st: st, w: 80, h: 20, source: source}
	w.keys.Next = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next"))
	w.keys.Back = back
	w.keys.Up = key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑", "up"))
	w.keys.Down = key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓", "down"))
	if cfg := eng.Config(); cfg != nil {
		for _, s := range cfg.Sources {
			w.sources = append(w.sources, s.Name)
		}
	}
	if source == "" && len(w.sources) == 1 {
		w.source = w.sources[0]
	}
	if w.source == "" {
		w.step = stepSource
		return w
	}
	w.toPoint(at)
	return w
}

// restoreTarget is the source's configured restore_target, or "".
func (w *wizard) restoreTarget() string {
	if cfg := w.eng.Config(); cfg != nil {
		if s, err := cfg.Source(w.source); err == nil {
			return s.RestoreTarget
		}
	}
	return ""
}

// newWizard is the wizard factory the root uses.
var newWizard = newWizardScreen

func (w *wizard) newInput(prompt, placeholder, value string) {
	in := textinput.New()
	in.Prompt = prompt
	in.Placeholder = placeholder
	in.SetValue(value)
	in.SetWidth(max(w.w-len(prompt)-2, 20))
	in.Focus()
	w.input = in
}

func (w *wizard) toPoint(at time.Time) {
	w.step, w.problem = stepPoint, ""
	v := ""
	if !at.IsZero() {
		v = at.UTC().Format("2006-01-02 15:04:05Z07:00")
	}
	w.newInput("restore to: ", "5m ago, 2026-11-23 14:05:00+00, an LSN like 0/3000060, or latest", v)
}

func (w *wizard) Init() tea.Cmd { return textinput.Blink }

// Busy: quitting now would interrupt a running restore.
func (w *wizard) Busy() bool { return w.step == stepRunning }

// Typing: keys go to a text input.
func (w *wizard) Typing() bool {
	return w.step == stepPoint || w.step == stepTarget || w.step == stepConfirm
}

func (w *wizard) SetSize(width, h int) {
	w.w, w.h = width, h
	w.input.SetWidth(max(width-20, 20))
}

func (w *wizard) ShortHelp() []key.Binding { return []key.Binding{w.keys.Next, w.keys.Back} }
func (w *wizard) FullHelp() [][]key.Binding {
	return [][]key.Binding{{w.keys.Next, w.keys.Back, w.keys.Up, w.keys.Down}}
}

func closeWith(s string) tea.Cmd { return func() tea.Msg { return CloseMsg{Status: s} } }

func (w *wizard) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case targetCheckedMsg:
		w.working = ""
		if msg.err != nil {
			w.problem = msg.err.Error()
			return w, nil
		}
		w.info = msg.info
		w.working = "planning…"
		return w, w.planCmd()
	case wizardPlanMsg:
		w.working = ""
		if msg.err != nil {
			w.problem = msg.err.Error()
			w.step = stepPoint
			w.newInput("restore to: ", "", "")
			return w, nil
		}
		w.plan, w.step, w.problem = msg.plan, stepPlan, ""
		return w, nil
	case progressMsg:
		w.last = restore.Progress(msg)
		return w, w.waitProgress()
	case restoreDoneMsg:
		w.sum, w.err, w.step = msg.sum, msg.err, stepDone
		w.cancel()
		return w, nil
	case tea.KeyPressMsg:
		return w.key(msg)
	}
	if w.Typing() {
		var cmd tea.Cmd
		w.input, cmd = w.input.Update(msg)
		return w, cmd
	}
	return w, nil
}

func (w *wizard) key(msg tea.KeyPressMsg) (Component, tea.Cmd) {
	if w.askStop {
		w.askStop = false
		if msg.String() == "y" {
			w.cancel()
		}
		return w, nil
	}
	isBack, isNext := key.Matches(msg, w.keys.Back), key.Matches(msg, w.keys.Next)
	switch w.step {
	case stepSource:
		switch {
		case isBack:
			return w, closeWith("restore cancelled")
		case key.Matches(msg, w.keys.Up):
			w.sel = max(w.sel-1, 0)
		case key.Matches(msg, w.keys.Down):
			w.sel = min(w.sel+1, max(len(w.sources)-1, 0))
		case isNext && len(w.sources) > 0:
			w.source = w.sources[w.sel]
			w.toPoint(time.Time{})
		}
		return w, nil
	case stepPoint:
		switch {
		case isBack:
			return w, closeWith("restore cancelled")
		case isNext:
			t, err := parsePoint(w.input.Value())
			if err != nil {
				w.problem = err.Error()
				return w, nil
			}
			w.target, w.problem, w.step = t, "", stepTarget
			if w.dsn == "" {
				w.dsn = w.restoreTarget()
			}
			w.newInput("target database: ", "postgres://user@host:5432/empty_db", w.dsn)
			return w, nil
		}
	case stepTarget:
		switch {
		case isBack:
			w.toPoint(w.target.Time)
			return w, nil
		case isNext:
			w.dsn = strings.TrimSpace(w.input.Value())
			if w.dsn == "" {
				w.problem = "type the connection string of an EMPTY database to restore into"
				return w, nil
			}
			w.problem, w.working = "", "checking the target…"
			return w, w.checkCmd()
		}
	case stepPlan:
		switch {
		case isBack:
			w.step = stepTarget
			w.newInput("target database: ", "", w.dsn)
		case isNext:
			w.step, w.problem = stepConfirm, ""
			w.newInput("type restore to go on: ", "restore", "")
		}
		return w, nil
	case stepConfirm:
		switch {
		case isBack:
			w.step = stepPlan
			return w, nil
		case isNext:
			switch strings.Join(strings.Fields(w.input.Value()), " ") {
			case "restore":
				w.noOwner = false
			case "restore --no-owner":
				w.noOwner = true
			default:
				w.problem = "type the word restore, or restore --no-owner (or esc to go back)"
				return w, nil
			}
			return w, w.start()
		}
	case stepRunning:
		if isBack {
			w.askStop = true
		}
		return w, nil
	case stepDone:
		if isBack || isNext {
			if w.err != nil {
				return w, func() tea.Msg { return CloseMsg{Status: "restore failed: " + w.err.Error()} }
			}
			return w, closeWith(fmt.Sprintf("restored %s into %s", w.source, redact.DSN(w.dsn)))
		}
		return w, nil
	}
	var cmd tea.Cmd
	w.input, cmd = w.input.Update(msg)
	return w, cmd
}

// parsePoint reads a time with zone, an LSN, or "latest".
func parsePoint(s string) (restore.Target, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return restore.Target{}, fmt.Errorf("type a time with its zone, an LSN, or latest")
	case strings.EqualFold(s, "latest"):
		return restore.Target{Latest: true}, nil
	case strings.Contains(s, "/") && !strings.Contains(s, " ") && !strings.Contains(s, "-"):
		l, err := restore.ParseLSN(s)
		return restore.Target{LSN: l}, err
	}
	t, err := restore.ParseTime(s)
	return restore.Target{Time: t}, err
}

func (w *wizard) checkCmd() tea.Cmd {
	ctx, eng, name, dsn := w.ctx, w.eng, w.source, w.dsn
	return func() tea.Msg {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		info, err := eng.CheckTarget(cctx, name, dsn)
		return targetCheckedMsg{info, err}
	}
}

func (w *wizard) planCmd() tea.Cmd {
	ctx, eng, name, t := w.ctx, w.eng, w.source, w.target
	return func() tea.Msg {
		p, err := eng.PlanRestore(ctx, name, t)
		return wizardPlanMsg{p, err}
	}
}

// start runs the restore in the background; progress arrives latest-wins.
func (w *wizard) start() tea.Cmd {
	rctx, cancel := context.WithCancel(context.WithoutCancel(w.ctx))
	w.cancel, w.step, w.started = cancel, stepRunning, time.Now()
	w.prog = make(chan restore.Progress, 1)
	prog := w.prog
	eng, name, plan, dsn, noOwner := w.eng, w.source, w.plan, w.dsn, w.noOwner
	run := func() tea.Msg {
		sum, err := eng.Restore(rctx, name, plan, restore.Options{TargetDSN: dsn, NoOwner: noOwner, Progress: func(p restore.Progress) {
			select {
			case <-prog: // drop the older one: latest wins
			default:
			}
			prog <- p
		}})
		close(prog) // Restore has returned: no more progress
		return restoreDoneMsg{sum, err}
	}
	return tea.Batch(run, w.waitProgress())
}

func (w *wizard) waitProgress() tea.Cmd {
	prog := w.prog
	return func() tea.Msg {
		p, ok := <-prog
		if !ok {
			return nil
		}
		return progressMsg(p)
	}
}

func (w *wizard) View() string {
	var b strings.Builder
	b.WriteString(w.st.Header.Render("Restore wizard") + w.st.Muted.Render(fmt.Sprintf("  step %d of 6", min(w.step+1, 6))) + "\n")
	if w.source != "" {
		b.WriteString("source   " + w.st.Input.Render(w.source) + "\n")
	}
	if w.step > stepPoint {
		b.WriteString("target   " + w.target.String() + "\n")
	}
	if w.step > stepTarget {
		b.WriteString(fmt.Sprintf("into     %s (%s, PostgreSQL %s, empty)\n", redact.DSN(w.dsn), w.info.Database, w.info.ServerVersion))
	}
	b.WriteString("\n")
	switch w.step {
	case stepSource:
		b.WriteString("Which source?\n")
		for i, s := range w.sources {
			line := "  " + s
			if i == w.sel {
				line = w.st.Selected.Render("> " + s)
			}
			b.WriteString(line + "\n")
		}
	case stepPoint:
		b.WriteString("Restore up to a time (with its zone, or like 5m ago), an LSN, or latest.\n")
		b.WriteString(w.input.View() + "\n")
	case stepTarget:
		b.WriteString("The EMPTY database to restore into (never the source). It is checked before anything is written.\n")
		b.WriteString(w.input.View() + "\n")
	case stepPlan, stepConfirm:
		p := w.plan
		b.WriteString(w.st.Header.Render("Plan") + "\n")
		b.WriteString(fmt.Sprintf("base backup  %s\n             consistent at %s, %s\n", p.Base.ArtifactKey, p.Base.ConsistentLSN, probe.HumanBytes(p.Base.SizeBytes)))
		b.WriteString(fmt.Sprintf("segments     %d (%s), up to %d transactions\n", len(p.Segments), probe.HumanBytes(p.SegmentBytes), p.Transactions))
		b.WriteString("result       " + p.Target.String() + "\n")
		for _, c := range p.LeftOut() {
			b.WriteString(w.st.Warn.Render("LEFT OUT     "+p.Describe(c)) + "\n")
		}
		if w.step == stepPlan {
			b.WriteString("\n" + w.st.Muted.Render("enter to continue, esc to change the target") + "\n")
		} else {
			b.WriteString("\n" + w.input.View() + "\n")
			b.WriteString(w.st.Muted.Render("or restore --no-owner: objects then belong to the restoring role (a target without the source's roles)") + "\n")
		}
	case stepRunning:
		p := w.last
		pct := 0.0
		if p.TotalBytes > 0 {
			pct = 100 * float64(p.Bytes) / float64(p.TotalBytes)
		}
		eta := "-"
		if p.Bytes > 0 && p.Phase == "replay" && p.TotalBytes > p.Bytes {
			eta = (time.Duration(float64(p.Elapsed) * float64(p.TotalBytes-p.Bytes) / float64(p.Bytes))).Round(time.Second).String()
		}
		b.WriteString(fmt.Sprintf("restoring…  phase %s  %.0f%%  %s / %s  %d transactions  ETA %s\n", orDots(p.Phase), pct,
			probe.HumanBytes(p.Bytes), probe.HumanBytes(p.TotalBytes), p.Transactions, eta))
		b.WriteString(w.st.Muted.Render(fmt.Sprintf("elapsed %s; esc stops the restore (the target is then partial)", time.Since(w.started).Round(time.Second))) + "\n")
		if w.askStop {
			b.WriteString(w.st.Warn.Render("Stop the restore? The target would be partial and must be dropped. (y/n)") + "\n")
		}
	case stepDone:
		if w.err != nil {
			b.WriteString(w.st.Error.Render("Restore failed: "+w.err.Error()) + "\n")
		} else {
			s := w.sum
			b.WriteString(w.st.OK.Render("Restore finished.") + "\n")
			b.WriteString(fmt.Sprintf("base backup  %s\nreplayed     %d transactions, %d rows\nsequences    %d set\ntook         %s\n",
				s.Base.ArtifactKey, s.Transactions, s.Rows, s.Sequences, s.Took.Round(time.Millisecond)))
			if s.LargeObjects > 0 {
				b.WriteString(w.st.Warn.Render(fmt.Sprintf("large objects %d, as of the base backup (not decoded)", s.LargeObjects)) + "\n")
			}
			if s.TempDDL > 0 {
				b.WriteString(fmt.Sprintf("temporary    %d DDL statement(s) on temporary objects not replayed\n", s.TempDDL))
			}
			if s.OwnerChanges > 0 {
				b.WriteString(fmt.Sprintf("owners       %d statement(s) about owners left out (a role the target lacks)\n", s.OwnerChanges))
			}
			for _, n := range s.Notes {
				b.WriteString("note         " + n + "\n")
			}
			for _, l := range s.LeftOut {
				b.WriteString(w.st.Warn.Render("LEFT OUT     "+l) + "\n")
			}
			for _, d := range s.SkippedDDL {
				label := "SKIPPED DDL  "
				if d.NotReproduced {
					label = "NOT REPRODUCED "
				}
				b.WriteString(w.st.Warn.Render(label+d.String()) + "\n")
			}
		}
		b.WriteString(w.st.Muted.Render("enter to return to the dashboard") + "\n")
	}
	if w.working != "" {
		b.WriteString(w.st.Muted.Render(w.working) + "\n")
	}
	if w.problem != "" {
		b.WriteString(w.st.Error.Render("! "+w.problem) + "\n")
	}
	return b.String()
}

func orDots(s string) string {
	if s == "" {
		return "…"
	}
	return s
}
