// Package tui is btfu's terminal interface: a Bubble Tea v2 program that
// reads the engine's status snapshots and sends it commands. It does no
// I/O in Update; engine calls are tea.Cmds returning typed messages.
package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/tui/styles"
)

// StatusReader is what the TUI needs from the engine today.
type StatusReader interface {
	Status(ctx context.Context) (engine.Status, error)
}

// refreshEvery is how often the dashboard re-reads the status.
const refreshEvery = 2 * time.Second

type statusMsg struct {
	st  engine.Status
	err error
}

type tickMsg time.Time

// Model is the root model. It alone decides alt screen and window title.
type Model struct {
	ctx      context.Context
	eng      StatusReader
	keys     KeyMap
	help     help.Model
	styles   styles.Styles
	width    int
	height   int
	status   engine.Status
	err      error
	loaded   bool
	selected int
	fullHelp bool
}

// New returns the root model reading status from eng.
func New(ctx context.Context, eng StatusReader) Model {
	return Model{ctx: ctx, eng: eng, keys: DefaultKeyMap(), help: help.New(), styles: styles.Default(), width: 80, height: 24}
}

// Run shows the TUI until the user quits or ctx ends.
func Run(ctx context.Context, eng StatusReader) error {
	_, err := tea.NewProgram(New(ctx, eng), tea.WithContext(ctx)).Run()
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: a clean stop
	}
	return err
}

func (m Model) fetch() tea.Cmd {
	ctx, eng := m.ctx, m.eng
	return func() tea.Msg {
		st, err := eng.Status(ctx)
		return statusMsg{st: st, err: err}
	}
}

func tick() tea.Cmd {
	return tea.Tick(refreshEvery, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return tea.Batch(m.fetch(), tick()) }

// Update implements tea.Model. It only routes.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.SetWidth(msg.Width)
	case tea.KeyPressMsg:
		return m.onKey(msg)
	case statusMsg:
		m.status, m.err, m.loaded = msg.st, msg.err, true
		m.selected = min(m.selected, max(len(m.status.Sources)-1, 0))
	case tickMsg:
		return m, tea.Batch(m.fetch(), tick())
	}
	return m, nil
}

func (m Model) onKey(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	switch {
	case key.Matches(msg, m.keys.Quit):
		return m, tea.Quit
	case key.Matches(msg, m.keys.Help):
		m.fullHelp = !m.fullHelp
	case key.Matches(msg, m.keys.Refresh):
		return m, m.fetch()
	case key.Matches(msg, m.keys.Up):
		m.selected = max(m.selected-1, 0)
	case key.Matches(msg, m.keys.Down):
		m.selected = min(m.selected+1, max(len(m.status.Sources)-1, 0))
	}
	return m, nil
}

// View implements tea.Model.
func (m Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.WindowTitle = "btfu"
	return v
}

// Render draws the screen as a string (used by View and by tests).
func (m Model) Render() string {
	var b strings.Builder
	b.WriteString(m.styles.Title.Render("btfu — sources") + "\n\n")
	switch {
	case !m.loaded:
		b.WriteString(m.styles.Muted.Render("reading status…") + "\n")
	case m.err != nil:
		b.WriteString(m.styles.Error.Render("status unavailable: "+m.err.Error()) + "\n")
	default:
		b.WriteString(m.dashboard())
	}
	b.WriteString("\n")
	if m.fullHelp {
		b.WriteString(m.help.FullHelpView(m.keys.FullHelp()))
	} else {
		b.WriteString(m.help.ShortHelpView(m.keys.ShortHelp()))
	}
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, m.width, "…")
	}
	if len(lines) > m.height && m.height > 0 {
		lines = lines[:m.height]
	}
	return strings.Join(lines, "\n")
}

func (m Model) dashboard() string {
	if len(m.status.Sources) == 0 {
		return m.styles.Muted.Render("no sources configured; add a [[source]] to config.toml") + "\n"
	}
	cols := []struct {
		title string
		width int
	}{{"SOURCE", 16}, {"STATE", 11}, {"FLUSHED LSN", 14}, {"BASES", 6}, {"SEGS", 7}, {"RESTORABLE FROM", 20}}
	var b strings.Builder
	for _, c := range cols {
		b.WriteString(m.styles.Header.Render(pad(c.title, c.width-1)) + " ")
	}
	b.WriteString("\n")
	for i, s := range m.status.Sources {
		from := "nothing yet"
		if len(s.Coverage) > 0 {
			from = s.Coverage[0].FromTime.UTC().Format("2006-01-02 15:04") + "Z"
		}
		cells := []string{s.Name, s.State, s.FlushedLSN, fmt.Sprint(s.BaseBackups), fmt.Sprint(s.Segments), from}
		var row strings.Builder
		for j, c := range cols {
			cell := pad(ansi.Truncate(cells[j], c.width-1, "…"), c.width)
			if j == 1 {
				cell = m.styles.State(s.State).Render(cell)
			}
			row.WriteString(cell)
		}
		line := row.String()
		if i == m.selected {
			line = m.styles.Selected.Render(line)
		}
		b.WriteString(line + "\n")
		if s.LastError != "" {
			b.WriteString(m.styles.Error.Render("  ! "+s.LastError) + "\n")
		}
	}
	return b.String()
}

func pad(s string, w int) string {
	if n := lipgloss.Width(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}
