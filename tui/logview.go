package tui

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/tui/styles"
)

// logView lists engine events, newest last, filtered by source and level.
type logView struct {
	st     styles.Styles
	now    func() time.Time
	events []engine.EventRecord
	source string // "" for all
	level  slog.Level
	w, h   int
	scroll int // lines up from the bottom
	keys   logKeys
}

func newLogView(c *common, events []engine.EventRecord) Component {
	l := &logView{st: c.styles, now: c.now, events: append([]engine.EventRecord(nil), events...), level: slog.LevelDebug}
	l.keys = newLogKeys()
	return l
}

func (l *logView) SetSize(w, h int) { l.w, l.h = w, h }
func (l *logView) ShortHelp() []key.Binding {
	return []key.Binding{l.keys.Source, l.keys.Level, l.keys.Up, l.keys.Down, l.keys.Back}
}
func (l *logView) FullHelp() [][]key.Binding { return [][]key.Binding{l.ShortHelp()} }

func (l *logView) sources() []string {
	seen := map[string]bool{}
	out := []string{""}
	for _, e := range l.events {
		if e.Source != "" && !seen[e.Source] {
			seen[e.Source] = true
			out = append(out, e.Source)
		}
	}
	return out
}

func (l *logView) Update(msg tea.Msg) (Component, tea.Cmd) {
	switch msg := msg.(type) {
	case eventMsg:
		l.events = append(l.events, engine.EventRecord(msg))
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, l.keys.Back):
			return l, func() tea.Msg { return CloseMsg{} }
		case key.Matches(msg, l.keys.Source):
			srcs := l.sources()
			for i, s := range srcs {
				if s == l.source {
					l.source = srcs[(i+1)%len(srcs)]
					break
				}
			}
		case key.Matches(msg, l.keys.Level):
			l.level = map[slog.Level]slog.Level{slog.LevelDebug: slog.LevelInfo, slog.LevelInfo: slog.LevelWarn, slog.LevelWarn: slog.LevelError, slog.LevelError: slog.LevelDebug}[l.level]
		case key.Matches(msg, l.keys.Up):
			l.scroll++
		case key.Matches(msg, l.keys.Down):
			l.scroll = max(l.scroll-1, 0)
		}
	}
	return l, nil
}

// logIndent is where a wrapped event message continues: under its start.
const logIndent = 8 + 1 + 5 + 1 + 12 + 1

// Init loads nothing: the log is the root's events.
func (l *logView) Init() tea.Cmd { return nil }

// Typing: the log has no text field.
func (l *logView) Typing() bool { return false }

func (l *logView) View() string {
	var lines []string
	n := 0
	for _, e := range l.events {
		if e.Level < l.level || (l.source != "" && e.Source != l.source) {
			continue
		}
		n++
		st := l.st.Muted
		switch {
		case e.Level >= slog.LevelError:
			st = l.st.Error
		case e.Level >= slog.LevelWarn:
			st = l.st.Warn
		}
		src := e.Source
		if src == "" {
			src = "-"
		}
		// The source is a list cell (cut to its column); the message wraps.
		head, lvl := e.At.Local().Format("15:04:05")+" ", fmt.Sprintf("%-5s", strings.ToLower(e.Level.String()))
		text := strings.Split(wrap(head+lvl+" "+pad(ansi.Truncate(src, 12, "…"), 12)+" "+e.Message, l.w, logIndent), "\n")
		text[0] = head + st.Render(lvl) + text[0][len(head)+len(lvl):]
		lines = append(lines, text...)
	}
	filter := "all sources"
	if l.source != "" {
		filter = "source " + l.source
	}
	title := "Event log"
	hl := strings.Split(wrap(title+fmt.Sprintf("  %s, level ≥ %s, %d event(s)", filter, strings.ToLower(l.level.String()), n), l.w, 2), "\n")
	hl[0] = l.st.Header.Render(title) + l.st.Muted.Render(hl[0][len(title):])
	for i := 1; i < len(hl); i++ {
		hl[i] = l.st.Muted.Render(hl[i])
	}
	head := strings.Join(hl, "\n")
	if n == 0 {
		return head + "\n" + l.st.Muted.Render("no events") + "\n"
	}
	room := max(l.h-1-strings.Count(head, "\n"), 3)
	l.scroll = min(l.scroll, max(len(lines)-room, 0))
	end := len(lines) - l.scroll
	start := max(end-room, 0)
	return head + "\n" + strings.Join(lines[start:end], "\n") + "\n"
}
