package tui

import (
	"context"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// Engine is what the TUI uses of the running engine (*engine.Engine
// implements it). Every call is made from a tea.Cmd, never from Update.
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
}

var _ Engine = (*engine.Engine)(nil)

// Component is one screen or panel. Children return strings; only the
// root model builds a tea.View.
type Component interface {
	Update(msg tea.Msg) (Component, tea.Cmd)
	View() string
	SetSize(width, height int)
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
}

// Busy is implemented by components doing work that quitting would
// interrupt (a running restore); the root asks before quitting.
type Busy interface {
	Busy() bool
}
