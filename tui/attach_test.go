package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
)

// The register form's and the wizard's engine calls.

func (f *fakeEngine) ProbeSource(_ context.Context, b config.SourceBlock) (*probe.Report, error) {
	f.calls = append(f.calls, "probe "+b.Name)
	return f.Probe(context.Background(), b.Name)
}
func (f *fakeEngine) AddSource(_ context.Context, b config.SourceBlock) error {
	f.calls = append(f.calls, "add "+b.Name)
	return nil
}
func (f *fakeEngine) CheckTarget(_ context.Context, name, dsn string) (restore.TargetInfo, error) {
	f.calls = append(f.calls, "check "+name)
	return restore.TargetInfo{Database: "drill"}, nil
}

// attachedFake is the fake engine as if it ran in another process.
type attachedFake struct{ *fakeEngine }

func (attachedFake) AttachedTo() (string, string, int, time.Time, string) {
	return "/var/lib/btfu/btfu.sock", "db-backup-1.eu-west-1.compute.internal", 4242, at(-3*time.Hour - 12*time.Minute - 5*time.Second), "1.4.0"
}

// Attached to an engine elsewhere, the header names it, whole at 80
// columns; quitting during a restore does not ask, since the restore runs
// in that engine and goes on.
func TestHeaderNamesTheAttachedEngine(t *testing.T) {
	f := sample()
	m := New(context.Background(), attachedFake{f})
	m.now = func() time.Time { return at(0) }
	m = sized(t, m, 80, 24)
	m, _ = update(t, m, statusMsg{st: f.st})
	first := strings.SplitN(ansi.Strip(m.Render()), "\n", 2)[0]
	if want := "btfu — sources · attached to pid 4242 on db-backup-1 · btfu 1.4.0 · up 3h12m"; first != want {
		t.Fatalf("header %q, want %q", first, want)
	}
	local := newModel(f)
	if first := strings.SplitN(ansi.Strip(local.Render()), "\n", 2)[0]; strings.Contains(first, "attached") {
		t.Fatalf("an in-process TUI says it is attached: %q", first)
	}

	m, _ = update(t, m, OpenWizardMsg{Source: "orders"})
	w := m.screen.(*wizard)
	w.step = stepRunning
	if !w.Busy() {
		t.Fatal("a running wizard is not busy")
	}
	m, cmd := update(t, m, press("ctrl+c"))
	if m.askQuit || cmd == nil {
		t.Fatal("ctrl+c during an attached restore asks instead of quitting")
	}
}

func TestUptime(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Second:                             "42s",
		12*time.Minute + 5*time.Second:               "12m5s",
		3*time.Hour + 12*time.Minute + 5*time.Second: "3h12m",
		51*time.Hour + 30*time.Minute:                "2d3h",
		-time.Second:                                 "0s",
	} {
		if got := uptime(d); got != want {
			t.Errorf("uptime(%s) = %q, want %q", d, got, want)
		}
	}
}
