package tui

import (
	"context"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// Engine is what the TUI uses of the running engine: the engine in this
// process (Local), or one running elsewhere reached over its control API.
// Every call is made from a tea.Cmd, never from Update.
type Engine interface {
	Status(ctx context.Context) (engine.Status, error)
	Subscribe(ctx context.Context) <-chan engine.EventRecord
	RecentEvents() []engine.EventRecord
	BackupNow(ctx context.Context, name string) (store.BaseBackup, error)
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	Probe(ctx context.Context, name string) (*probe.Report, error)
	Coverage(ctx context.Context, name string) (coverage.Source, error)
	SourceRecord(ctx context.Context, name string) (store.Source, error)
	PlanRestore(ctx context.Context, name string, t restore.Target) (*restore.Plan, error)
	Restore(ctx context.Context, name string, plan *restore.Plan, opts restore.Options) (restore.Summary, error)
	Config() *config.Config
	Reload(ctx context.Context, cfg *config.Config) error
	// ProbeSource probes a source that is not configured yet (the
	// register form); AddSource appends it to config.toml and starts it.
	ProbeSource(ctx context.Context, b config.SourceBlock) (*probe.Report, error)
	AddSource(ctx context.Context, b config.SourceBlock) error
	// CheckTarget connects to a restore target and refuses the source
	// itself (the wizard, before planning).
	CheckTarget(ctx context.Context, name, dsn string) (restore.TargetInfo, error)
}

// Attached is implemented by an Engine that runs in another process (a
// client of its control API): the header names it, and quitting the TUI
// leaves it running.
type Attached interface {
	// AttachedTo describes the engine: where it answers, its host, pid,
	// start time and version.
	AttachedTo() (where, host string, pid int, started time.Time, version string)
}

var _ Engine = Local{}

// Component is one screen or panel. Children return strings; only the
// root model builds a tea.View.
type Component interface {
	// Init is run when the screen opens (its first load, its form).
	Init() tea.Cmd
	Update(msg tea.Msg) (Component, tea.Cmd)
	View() string
	SetSize(width, height int)
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
	// Typing reports whether keys go to a text field, so the root's own
	// keys (help) are left to it.
	Typing() bool
}

// Busy is implemented by components doing work that quitting would
// interrupt (a running restore); the root asks before quitting.
type Busy interface {
	Busy() bool
}
