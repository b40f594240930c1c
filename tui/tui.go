// Package tui is btfu's terminal interface: a Bubble Tea v2 program over
// the running engine. The root model routes; screens (dashboard, source
// detail, coverage timeline, restore wizard, register form, event log) are
// components returning strings. No I/O happens in Update: engine calls are
// tea.Cmds returning typed messages, and engine events arrive through one
// bridge goroutine.
package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"golang.org/x/term"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/tui/styles"
)

// refreshEvery is how often the status is re-read.
const refreshEvery = time.Second

// Model is the root model. It alone decides alt screen and window title.
// It routes: the messages every screen depends on (size, status, events,
// notices, quitting, help) are its own, the rest go to the focused screen.
type Model struct {
	*common
	help    help.Model
	width   int
	height  int
	dash    dashboard
	screen  Component // over the dashboard; nil: the dashboard has the focus
	notice  NoticeMsg
	banner  string // an engine-level problem (invalid config edit)
	events  []engine.EventRecord
	full    bool // full help
	askQuit bool // a busy screen would be interrupted: y/n
}

// New returns the root model over eng.
func New(ctx context.Context, eng Engine) Model {
	c := &common{ctx: ctx, eng: eng, keys: DefaultKeyMap(), styles: styles.Default(), now: time.Now}
	m := Model{common: c, help: help.New(), width: 80, height: 24, events: eng.RecentEvents()}
	m.dash = newDashboard(c, m.width)
	return m
}

// ErrTerminalLost is what Run returns when its terminal went away (an SSH
// connection dropped, tmux killed): nobody can see or quit the TUI any
// more, so the caller stops as on SIGTERM.
var ErrTerminalLost = errors.New("the terminal went away")

// terminalCheck is how often Run checks that its terminal is still there.
const terminalCheck = 250 * time.Millisecond

// Run shows the TUI on stdin and stdout until the user quits, ctx ends or
// the terminal goes away (ErrTerminalLost).
func Run(ctx context.Context, eng Engine) error {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := tea.NewProgram(New(ctx, eng), tea.WithContext(pctx))
	// A hung-up terminal gives the program EOF (it then waits for input
	// forever) or EIO: checking the terminal itself catches both.
	go watchTerminal(pctx, func() { cancel(ErrTerminalLost) }, os.Stdin, os.Stdout)
	bridge, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		// Events reach the program in order; the engine's subscriber
		// queue absorbs a slow UI, so the engine never waits for it.
		for ev := range eng.Subscribe(bridge) {
			p.Send(eventMsg(ev))
		}
	}()
	_, err := p.Run()
	if errors.Is(context.Cause(pctx), ErrTerminalLost) || (err != nil && errors.Is(err, syscall.EIO)) {
		return ErrTerminalLost
	}
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: a clean stop
	}
	return err
}

// watchTerminal calls lost once any of files stops being a terminal: a
// hung-up TTY answers every ioctl with EIO.
func watchTerminal(ctx context.Context, lost func(), files ...*os.File) {
	var fds []int
	for _, f := range files {
		if fd := int(f.Fd()); term.IsTerminal(fd) {
			fds = append(fds, fd)
		}
	}
	if len(fds) == 0 {
		return
	}
	t := time.NewTicker(terminalCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, fd := range fds {
			if !term.IsTerminal(fd) {
				lost()
				return
			}
		}
	}
}

func tick() tea.Cmd {
	return tea.Tick(refreshEvery, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return tea.Batch(m.fetch(), tick()) }

// Update implements tea.Model. It only routes: global messages first, then
// the focused screen.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		return m.resize(msg), nil
	case statusMsg:
		return m.onStatus(msg)
	case startMsg:
		m.notice = NoticeMsg{Text: msg.notice}
		return m, msg.cmd
	case tickMsg:
		return m, tea.Batch(m.fetch(), tick())
	case eventMsg:
		return m.onEvent(msg)
	case NoticeMsg:
		m.notice = msg
		return m, m.fetch()
	case CloseMsg:
		m.screen, m.notice = nil, NoticeMsg{Text: msg.Status}
		return m, m.fetch()
	case OpenWizardMsg:
		return m.open(newWizard(m.common, msg.Source, msg.At))
	case openMsg:
		return m.open(m.screenFor(msg))
	case tea.KeyPressMsg:
		return m.onKey(msg)
	}
	return m.toFocused(msg)
}

func (m Model) resize(msg tea.WindowSizeMsg) Model {
	m.width, m.height = msg.Width, msg.Height
	m.help.SetWidth(msg.Width)
	m.dash.SetSize(msg.Width, m.bodyHeight())
	if m.screen != nil {
		m.screen.SetSize(msg.Width, m.bodyHeight())
	}
	return m
}

// onStatus gives the status to the dashboard, whichever screen has the
// focus, and to that screen.
func (m Model) onStatus(msg statusMsg) (tea.Model, tea.Cmd) {
	if m.screen != nil {
		m.dash.Update(msg)
	}
	return m.toFocused(msg)
}

func (m Model) onEvent(msg eventMsg) (tea.Model, tea.Cmd) {
	ev := engine.EventRecord(msg)
	m.events = append(m.events, ev)
	if len(m.events) > 500 {
		m.events = m.events[len(m.events)-500:]
	}
	switch kind.Kind(ev.Kind) {
	case kind.ConfigInvalid, kind.ConfigReloadFailed:
		m.banner = "config.toml: " + ev.Message
	case kind.ConfigReloaded:
		m.banner = ""
	}
	return m.toFocused(msg)
}

// focused is the screen that has the focus, the one open or else the
// dashboard, to read (its view, help, typing); messages go through
// toFocused.
func (m Model) focused() Component {
	if m.screen != nil {
		return m.screen
	}
	return &m.dash
}

// toFocused hands a message to the focused screen. The dashboard stays
// the root's (a value, like the rest of the model).
func (m Model) toFocused(msg tea.Msg) (tea.Model, tea.Cmd) {
	if m.screen == nil {
		_, cmd := m.dash.Update(msg)
		return m, cmd
	}
	next, cmd := m.screen.Update(msg)
	m.screen = next
	return m, cmd
}

// screenFor builds the screen the dashboard asked for.
func (m Model) screenFor(msg openMsg) Component {
	switch msg.screen {
	case detailScreen:
		return newDetail(m.common, msg.source)
	case timelineScreen:
		return newTimeline(m.common, msg.source)
	case registerScreen:
		return newRegister(m.common)
	}
	return newLogView(m.common, m.events)
}

func (m Model) open(c Component) (tea.Model, tea.Cmd) {
	c.SetSize(m.width, m.bodyHeight())
	m.screen, m.notice, m.full = c, NoticeMsg{}, false
	return m, c.Init()
}

func (m Model) attached() bool {
	_, ok := m.eng.(Attached)
	return ok
}

func (m Model) busy() bool {
	b, ok := m.screen.(Busy)
	return ok && b.Busy()
}

func (m Model) onKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	if m.askQuit {
		m.askQuit = false
		if msg.String() == "y" {
			return m, tea.Quit
		}
		return m, nil
	}
	if msg.String() == "ctrl+c" || (m.screen == nil && key.Matches(msg, m.keys.Quit)) {
		// An attached TUI's restore runs in the engine's process and goes
		// on after quitting.
		if m.busy() && !m.attached() {
			m.askQuit = true
			return m, nil
		}
		return m, tea.Quit
	}
	if key.Matches(msg, m.keys.Help) && !m.focused().Typing() {
		m.full = !m.full
		return m, nil
	}
	if m.screen == nil {
		if req := m.dash.request(msg); req != nil {
			return m.Update(req)
		}
	}
	return m.toFocused(msg)
}

// View implements tea.Model.
func (m Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "btfu"
	return v
}

func (m Model) bodyHeight() int { return max(m.height-4, 5) }

// Render draws the screen as a string (used by View and by tests).
func (m Model) Render() string {
	var b strings.Builder
	title := "btfu — sources"
	if m.screen != nil {
		title = "btfu"
	}
	b.WriteString(m.styles.Title.Render(title) + m.attachedTo() + "\n")
	if m.banner != "" {
		b.WriteString(wrapStyled(m.styles.Error, "! "+m.banner, m.width, 2) + "\n")
	}
	b.WriteString(m.focused().View())
	body := strings.TrimRight(b.String(), "\n")
	var foot strings.Builder
	if m.askQuit {
		foot.WriteString(wrapStyled(m.styles.Warn, "A restore is running; quitting stops it and leaves the target partial. Quit? (y/n)", m.width, 0) + "\n")
	} else if m.notice.Text != "" {
		st := m.styles.OK
		if m.notice.Err {
			st = m.styles.Error
		}
		foot.WriteString(wrapStyled(st, m.notice.Text, m.width, 2) + "\n")
	}
	foot.WriteString(m.helpView())
	lines := strings.Split(body, "\n")
	footLines := strings.Split(foot.String(), "\n")
	if m.height > 0 && len(lines)+len(footLines)+1 > m.height {
		lines = lines[:max(m.height-len(footLines)-1, 1)]
	}
	all := append(append(lines, ""), footLines...)
	for i, l := range all {
		all[i] = ansi.Truncate(l, m.width, "…")
	}
	return strings.Join(all, "\n")
}

// attachedTo names the engine in another process the TUI is attached
// to, after the title; "" for the engine in this process.
func (m Model) attachedTo() string {
	a, ok := m.eng.(Attached)
	if !ok {
		return ""
	}
	_, host, pid, started, version := a.AttachedTo()
	host, _, _ = strings.Cut(host, ".")
	return m.styles.Muted.Render(fmt.Sprintf(" · attached to pid %d on %s · btfu %s · up %s", pid, host, version, uptime(m.now().Sub(started))))
}

// uptime is d to the two largest units: 42s, 12m5s, 3h12m, 2d3h.
func uptime(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	switch {
	case d < time.Hour:
		return d.String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s")
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}

func (m Model) helpView() string {
	var km help.KeyMap = m.focused()
	if m.full {
		return m.help.FullHelpView(km.FullHelp())
	}
	return m.help.ShortHelpView(km.ShortHelp())
}
