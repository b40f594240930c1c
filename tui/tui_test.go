package tui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
)

type fixedStatus struct {
	st  engine.Status
	err error
}

func (f fixedStatus) Status(context.Context) (engine.Status, error) { return f.st, f.err }

var sample = engine.Status{Sources: []engine.SourceStatus{
	{Name: "orders", State: "streaming", FlushedLSN: "0/16B3748", BaseBackups: 2, Segments: 31,
		Coverage: []engine.CoverageRange{{FromTime: time.Date(2026, 11, 22, 3, 0, 4, 0, time.UTC), ToTime: time.Now()}}},
	{Name: "billing", State: "error", FlushedLSN: "0/0", LastError: "slot btfu_billing is lost"},
}}

func update(t *testing.T, m Model, msgs ...tea.Msg) (Model, tea.Cmd) {
	t.Helper()
	var cmd tea.Cmd
	for _, msg := range msgs {
		var next tea.Model
		next, cmd = m.Update(msg)
		m = next.(Model)
	}
	return m, cmd
}

func TestDashboardShowsSourcesAndErrors(t *testing.T) {
	m := New(context.Background(), fixedStatus{st: sample})
	msg := m.fetch()()
	m, _ = update(t, m, tea.WindowSizeMsg{Width: 80, Height: 24}, msg)
	out := ansi.Strip(m.Render())
	for _, want := range []string{"orders", "streaming", "0/16B3748", "2026-11-22 03:00Z", "billing", "! slot btfu_billing is lost", "q quit"} {
		if !strings.Contains(out, want) {
			t.Errorf("view lacks %q:\n%s", want, out)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if w := ansi.StringWidth(line); w > 80 {
			t.Errorf("line %d is %d wide at 80 columns: %q", i, w, line)
		}
	}
}

func TestStatusErrorIsShown(t *testing.T) {
	m := New(context.Background(), fixedStatus{err: errors.New("database is locked")})
	m, _ = update(t, m, m.fetch()())
	if out := ansi.Strip(m.Render()); !strings.Contains(out, "status unavailable: database is locked") {
		t.Fatalf("view:\n%s", out)
	}
}

func TestKeys(t *testing.T) {
	m := New(context.Background(), fixedStatus{st: sample})
	m, _ = update(t, m, m.fetch()())
	m, _ = update(t, m, tea.KeyPressMsg{Code: tea.KeyDown})
	if m.selected != 1 {
		t.Fatalf("down: selected %d", m.selected)
	}
	m, _ = update(t, m, tea.KeyPressMsg{Code: 'j', Text: "j"})
	if m.selected != 1 {
		t.Fatalf("down past the end: selected %d", m.selected)
	}
	m, _ = update(t, m, tea.KeyPressMsg{Code: 'k', Text: "k"})
	if m.selected != 0 {
		t.Fatalf("up: selected %d", m.selected)
	}
	m, _ = update(t, m, tea.KeyPressMsg{Code: '?', Text: "?"})
	if !m.fullHelp || !strings.Contains(ansi.Strip(m.Render()), "refresh") {
		t.Fatalf("? should show full help:\n%s", ansi.Strip(m.Render()))
	}
	_, cmd := update(t, m, tea.KeyPressMsg{Code: 'q', Text: "q"})
	if cmd == nil {
		t.Fatal("q returned no command")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q did not quit")
	}
}

func TestTickRefreshes(t *testing.T) {
	m := New(context.Background(), fixedStatus{st: sample})
	_, cmd := update(t, m, tickMsg(time.Now()))
	if cmd == nil {
		t.Fatal("tick must re-arm and fetch")
	}
}

func TestViewOwnsAltScreen(t *testing.T) {
	v := New(context.Background(), fixedStatus{}).View()
	if !v.AltScreen || v.WindowTitle != "btfu" {
		t.Fatalf("view: alt=%v title=%q", v.AltScreen, v.WindowTitle)
	}
}
