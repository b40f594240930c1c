package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/human"
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

// What the wizard waits for, shown while it does.
const (
	checking = "checking the target…"
	planning = "planning…"
)

// wizard is the guided restore: source, target point, target database
// (checked), the dry-run plan, a typed confirmation, live progress and a
// summary. The inputs are huh forms, one per step, checked as they are
// typed; submitting one moves on, esc goes back. The restore runs under
// its own context, cancelled only when the user confirms stopping it.
type wizard struct {
	ctx     context.Context
	eng     Engine
	st      styles.Styles
	w, h    int
	step    int
	sources []string
	source  string
	form    *form  // the step's form; nil on the plan, while checking and after
	point   string // what was typed as the point
	target  restore.Target
	dsn     string
	confirm string
	info    restore.TargetInfo
	plan    *restore.Plan
	problem string // what a check of the input refused
	working string // a check in progress
	cancel  context.CancelFunc
	prog    chan restore.Progress
	last    restore.Progress
	started time.Time
	sum     restore.Summary
	err     error
	askStop bool
	scroll  int  // first line of the summary shown
	noOwner bool // typed restore --no-owner
	init    tea.Cmd
	keys    wizardKeys
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

func newWizardScreen(c *common, source string, at time.Time) Component {
	w := &wizard{ctx: c.ctx, eng: c.eng, st: c.styles, w: 80, h: 20, source: source}
	w.keys = newWizardKeys()
	if cfg := w.eng.Config(); cfg != nil {
		for _, s := range cfg.Sources {
			w.sources = append(w.sources, s.Name)
		}
	}
	if source == "" && len(w.sources) == 1 {
		w.source = w.sources[0]
	}
	if !at.IsZero() {
		// Exact, so the wizard plans what the timeline showed at its cursor.
		w.point = at.UTC().Format("2006-01-02 15:04:05.999999999Z07:00")
	}
	switch {
	case w.source == "" && len(w.sources) == 0:
		w.step, w.problem = stepSource, "no source is configured; register one first (n on the dashboard)"
	case w.source == "":
		w.init = w.toSource()
	default:
		w.init = w.toPoint()
	}
	return w
}

// newWizard is the wizard factory the root uses.
var newWizard = newWizardScreen

// configSource is the source's configuration, or nil.
func (w *wizard) configSource() *config.Source {
	if cfg := w.eng.Config(); cfg != nil {
		if s, err := cfg.Source(w.source); err == nil {
			return s
		}
	}
	return nil
}

// formHeight is the room a step's form has under the wizard's summary.
func (w *wizard) formHeight() int { return max(w.h-6, 6) }

func (w *wizard) setForm(fields ...huh.Field) tea.Cmd {
	w.form = newForm(w.st, w.w, w.formHeight(), fields...)
	return w.form.Init()
}

func (w *wizard) toSource() tea.Cmd {
	w.step = stepSource
	return w.setForm(huh.NewSelect[string]().Title("Which source?").Options(huh.NewOptions(w.sources...)...).Value(&w.source))
}

func (w *wizard) toPoint() tea.Cmd {
	w.step = stepPoint
	return w.setForm(huh.NewInput().Title("Restore up to:").
		Description("a time with its zone (2026-11-23 14:05:00+00), a time ago (5m ago), an LSN (0/3000060), or latest").
		Placeholder("latest").Value(&w.point).Validate(checkPoint))
}

func (w *wizard) toTarget() tea.Cmd {
	w.step = stepTarget
	if w.dsn == "" {
		if s := w.configSource(); s != nil {
			w.dsn = s.RestoreTarget
		}
	}
	return w.setForm(huh.NewInput().Title("Restore into the target database:").
		Description("the connection string of an EMPTY database, never the source; it is checked before anything is written").
		Placeholder("postgres://user@host:5432/empty_db").Value(&w.dsn).Validate(w.checkTargetDSN))
}

func (w *wizard) toConfirm() tea.Cmd {
	w.step, w.confirm = stepConfirm, ""
	return w.setForm(huh.NewInput().Title("Confirm: type restore to go on").
		Description("or restore --no-owner: objects then belong to the restoring role").
		Value(&w.confirm).Validate(checkConfirm))
}

func (w *wizard) Init() tea.Cmd { return w.init }

// Busy: quitting now would interrupt a running restore.
func (w *wizard) Busy() bool { return w.step == stepRunning }

// Typing: keys go to a form.
func (w *wizard) Typing() bool { return w.form != nil }

func (w *wizard) SetSize(width, h int) {
	w.w, w.h = width, h
	w.form.size(width, w.formHeight())
}

func (w *wizard) ShortHelp() []key.Binding {
	switch {
	case w.form != nil:
		return w.form.help()
	case w.step == stepRunning:
		return []key.Binding{w.keys.Stop}
	case w.step == stepDone:
		return []key.Binding{w.keys.Up, w.keys.Down, w.keys.Done}
	}
	return []key.Binding{w.keys.Next, w.keys.Back}
}
func (w *wizard) FullHelp() [][]key.Binding { return [][]key.Binding{w.ShortHelp()} }

func closeWith(s string) tea.Cmd { return func() tea.Msg { return CloseMsg{Status: s} } }

func (w *wizard) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case formSubmittedMsg:
		if w.form == nil || msg.form != w.form.Form {
			return w, nil
		}
		return w, w.submitted()
	case formCancelledMsg:
		if w.form == nil || msg.form != w.form.Form {
			return w, nil
		}
		return w, w.cancelled()
	case targetCheckedMsg:
		if w.working != checking {
			return w, nil // the user went back meanwhile
		}
		w.working = ""
		if msg.err != nil {
			w.problem = msg.err.Error()
			return w, w.toTarget()
		}
		w.info = msg.info
		w.working = planning
		return w, w.planCmd()
	case wizardPlanMsg:
		if w.working != planning {
			return w, nil
		}
		w.working = ""
		if msg.err != nil {
			w.problem = msg.err.Error()
			return w, w.toPoint()
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
		if w.form == nil {
			return w.key(msg)
		}
		if w.working == "" {
			w.problem = "" // the form says what is wrong as it is typed
		}
	}
	if w.form != nil {
		return w, w.form.update(msg)
	}
	return w, nil
}

// submitted moves on from the step whose form was submitted (its value
// passed the form's check).
func (w *wizard) submitted() tea.Cmd {
	w.problem = ""
	switch w.step {
	case stepSource:
		return w.toPoint()
	case stepPoint:
		t, err := parsePoint(w.point)
		if err != nil { // checked already; a relative time is read now
			w.problem = err.Error()
			return w.toPoint()
		}
		w.target = t
		return w.toTarget()
	case stepTarget:
		w.dsn = strings.TrimSpace(w.dsn)
		w.form, w.working = nil, checking
		return w.checkCmd()
	case stepConfirm:
		w.noOwner = normalize(w.confirm) == "restore --no-owner"
		w.form = nil
		return w.start()
	}
	return nil
}

// cancelled goes back one step (or leaves from the first).
func (w *wizard) cancelled() tea.Cmd {
	w.problem = ""
	switch w.step {
	case stepTarget:
		return w.toPoint()
	case stepConfirm:
		w.form, w.step = nil, stepPlan
		return nil
	}
	return closeWith("restore cancelled")
}

// key answers keys of the steps without a form: the plan, the running
// restore and its summary.
func (w *wizard) key(msg tea.KeyPressMsg) (Component, tea.Cmd) {
	if w.askStop {
		w.askStop = false
		if msg.String() == "y" {
			w.cancel()
		}
		return w, nil
	}
	isBack, isNext := key.Matches(msg, w.keys.Back), key.Matches(msg, w.keys.Next)
	if w.working != "" {
		if isBack { // stop waiting for the check or the plan: edit the target
			w.working = ""
			return w, w.toTarget()
		}
		return w, nil
	}
	switch w.step {
	case stepSource: // no source to choose
		if isBack || isNext {
			return w, closeWith("")
		}
	case stepPlan:
		switch {
		case isBack:
			return w, w.toTarget()
		case isNext:
			return w, w.toConfirm()
		}
	case stepRunning:
		if isBack {
			w.askStop = true
		}
	case stepDone:
		switch {
		case key.Matches(msg, w.keys.Up):
			w.scroll = max(w.scroll-1, 0)
		case key.Matches(msg, w.keys.Down):
			w.scroll++
		}
		if isBack || isNext {
			if w.err != nil {
				return w, closeWith("restore failed: " + w.err.Error())
			}
			return w, closeWith(fmt.Sprintf("restored %s into %s", w.source, redact.DSN(w.dsn)))
		}
	}
	return w, nil
}

func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// checkPoint is the point form's check.
func checkPoint(s string) error {
	_, err := parsePoint(s)
	return err
}

// checkConfirm accepts the word restore, or restore --no-owner.
func checkConfirm(s string) error {
	switch normalize(s) {
	case "restore", "restore --no-owner":
		return nil
	}
	return errors.New("type the word restore, or restore --no-owner (or esc to go back)")
}

// checkTargetDSN is the target form's check: a connection string that
// parses and does not name the source's own database. The target check
// (checkCmd) then connects and refuses the source by system identifier
// and database, and a database that is not empty.
func (w *wizard) checkTargetDSN(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return errors.New("type the connection string of an EMPTY database to restore into")
	}
	if err := checkSourceDSN(s); err != nil {
		return err
	}
	if src := w.configSource(); src != nil && sameDatabase(s, src.DSN) {
		return fmt.Errorf("the target is the source itself (%s is the database of source %s): btfu never restores into the source; create an empty database elsewhere", redact.DSN(s), w.source)
	}
	return nil
}

// sameDatabase reports whether two connection strings name the same
// database on the same host and port.
func sameDatabase(a, b string) bool {
	ca, err := pgconn.ParseConfig(a)
	if err != nil {
		return false
	}
	cb, err := pgconn.ParseConfig(b)
	if err != nil {
		return false
	}
	return ca.Host == cb.Host && ca.Port == cb.Port && ca.Database == cb.Database
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

// label is the width of the wizard's label column.
const label = 13

// line renders a labelled line, wrapped under its value.
func (w *wizard) line(name, value string) string {
	return wrap(pad(name+" ", label)+value, w.w, label) + "\n"
}

func (w *wizard) View() string {
	var b strings.Builder
	b.WriteString(w.st.Header.Render("Restore wizard") + w.st.Muted.Render(fmt.Sprintf("  step %d of 6", min(w.step+1, 6))) + "\n")
	if w.source != "" && w.step != stepSource {
		b.WriteString(w.line("source", w.source))
	}
	if w.step > stepPoint {
		b.WriteString(w.line("target", w.target.String()))
	}
	switch {
	case w.step > stepTarget:
		b.WriteString(w.line("into", fmt.Sprintf("%s (%s, PostgreSQL %s, empty)", redact.DSN(w.dsn), w.info.Database, w.info.ServerVersion)))
	case w.step == stepTarget && w.form == nil:
		b.WriteString(w.line("into", redact.DSN(w.dsn)))
	}
	b.WriteString("\n")
	switch w.step {
	case stepSource, stepPoint, stepTarget:
		if w.form != nil {
			b.WriteString(w.form.view(w.st, w.w))
		}
	case stepPlan, stepConfirm:
		w.viewPlan(&b)
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
		b.WriteString(wrap(fmt.Sprintf("restoring…  phase %s  %.0f%%  %s / %s  %d transactions  ETA %s", orDots(p.Phase), pct,
			human.Bytes(p.Bytes), human.Bytes(p.TotalBytes), p.Transactions, eta), w.w, 12) + "\n")
		b.WriteString(wrapStyled(w.st.Muted, fmt.Sprintf("elapsed %s; stopping leaves the target partial", time.Since(w.started).Round(time.Second)), w.w, 0) + "\n")
		if w.askStop {
			b.WriteString(wrapStyled(w.st.Warn, "Stop the restore? The target would be partial and must be dropped. (y/n)", w.w, 0) + "\n")
		}
	case stepDone:
		w.viewSummary(&b)
	}
	if w.working != "" {
		b.WriteString(wrapStyled(w.st.Muted, w.working, w.w, 0) + "\n")
	}
	if w.problem != "" {
		b.WriteString(wrapStyled(w.st.Error, "! "+w.problem, w.w, 2) + "\n")
	}
	return b.String()
}

// room is how many more lines fit on the screen under what b holds.
func (w *wizard) room(b *strings.Builder) int {
	return w.h - strings.Count(b.String(), "\n")
}

func (w *wizard) viewPlan(b *strings.Builder) {
	p := w.plan
	b.WriteString(w.st.Header.Render("Plan") + "\n")
	b.WriteString(w.line("base backup", p.Base.ArtifactKey))
	b.WriteString(w.line("", fmt.Sprintf("consistent at %s, %s", p.Base.ConsistentLSN, human.Bytes(p.Base.SizeBytes))))
	b.WriteString(w.line("segments", fmt.Sprintf("%d (%s), up to %d transactions", len(p.Segments), human.Bytes(p.SegmentBytes), p.Transactions)))
	b.WriteString(w.line("result", p.Target.String()))
	tail := "\n" + wrapStyled(w.st.Muted, "enter to continue, esc to change the target", w.w, 0) + "\n"
	if w.step == stepConfirm && w.form != nil {
		tail = "\n" + w.form.view(w.st, w.w)
	}
	// The tables left out are a list: as many as fit above the
	// confirmation, then how many more.
	var items []string
	for _, c := range p.LeftOut() {
		items = append(items, wrapStyled(w.st.Warn, pad("LEFT OUT ", label)+p.Describe(c), w.w, label)+"\n")
	}
	b.WriteString(fitList(items, w.room(b)-strings.Count(tail, "\n"), func(n int) string {
		return wrapStyled(w.st.Warn, pad("LEFT OUT ", label)+fmt.Sprintf("and %d more table(s); btfu restore --dry-run lists them all", n), w.w, label) + "\n"
	}))
	b.WriteString(tail)
}

// fitList joins items (each ending in a newline) into at most room lines:
// when they do not all fit, the first ones and more(n) for the n others.
func fitList(items []string, room int, more func(n int) string) string {
	total := 0
	for _, it := range items {
		total += strings.Count(it, "\n")
	}
	if total <= room {
		return strings.Join(items, "")
	}
	var b strings.Builder
	used := 0
	for i, it := range items {
		rest := more(len(items) - i)
		if used+strings.Count(it, "\n")+strings.Count(rest, "\n") > room {
			return b.String() + rest
		}
		b.WriteString(it)
		used += strings.Count(it, "\n")
	}
	return b.String()
}

func (w *wizard) viewSummary(b *strings.Builder) {
	if w.err != nil {
		b.WriteString(wrapStyled(w.st.Error, "Restore failed: "+w.err.Error(), w.w, 2) + "\n")
		return
	}
	s := w.sum
	var o strings.Builder
	o.WriteString(w.line("base backup", s.Base.ArtifactKey))
	o.WriteString(w.line("replayed", fmt.Sprintf("%d transactions, %d rows", s.Transactions, s.Rows)))
	o.WriteString(w.line("sequences", fmt.Sprintf("%d set", s.Sequences)))
	o.WriteString(w.line("took", s.Took.Round(time.Millisecond).String()))
	if s.LargeObjects > 0 {
		o.WriteString(wrapStyled(w.st.Warn, pad("large objects ", label)+fmt.Sprintf("%d, as of the base backup (not decoded)", s.LargeObjects), w.w, label) + "\n")
	}
	if s.TempDDL > 0 {
		o.WriteString(w.line("temporary", fmt.Sprintf("%d DDL statement(s) on temporary objects not replayed", s.TempDDL)))
	}
	if s.OwnerChanges > 0 {
		o.WriteString(w.line("owners", fmt.Sprintf("%d statement(s) about owners left out (a role the target lacks)", s.OwnerChanges)))
	}
	for _, n := range s.Notes {
		o.WriteString(w.line("note", n))
	}
	for _, l := range s.LeftOut {
		o.WriteString(wrapStyled(w.st.Warn, pad("LEFT OUT ", label)+l, w.w, label) + "\n")
	}
	for _, d := range s.SkippedDDL {
		name := "SKIPPED DDL"
		if d.NotReproduced {
			name = "NOT REPRODUCED"
		}
		o.WriteString(wrapStyled(w.st.Warn, pad(name+" ", label)+d.String(), w.w, label) + "\n")
	}
	b.WriteString(w.st.OK.Render("Restore finished.") + "\n")
	// A long summary scrolls (↑/↓) rather than running off the screen.
	lines := strings.Split(strings.TrimSuffix(o.String(), "\n"), "\n")
	room := max(w.room(b), 3)
	if len(lines) > room {
		room--
		w.scroll = min(w.scroll, len(lines)-room)
		b.WriteString(strings.Join(lines[w.scroll:w.scroll+room], "\n") + "\n")
		b.WriteString(w.st.Muted.Render(fmt.Sprintf("lines %d-%d of %d; ↑/↓ scroll", w.scroll+1, w.scroll+room, len(lines))) + "\n")
	} else {
		b.WriteString(o.String())
	}
}

func orDots(s string) string {
	if s == "" {
		return "…"
	}
	return s
}
