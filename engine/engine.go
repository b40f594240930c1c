// Package engine runs btfu: one worker per configured source under a
// single context, fed by config.toml and recording everything in the
// metadata store. The TUI and the headless runner are two consumers of the
// same Engine: they call its methods and read its status snapshots; the
// engine knows nothing of them.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Engine owns the stores and the per-source state.
type Engine struct {
	cfg       *config.Config
	log       *slog.Logger
	meta      store.Store
	artifacts artifact.Store
	runners   map[string]*runner
}

// Open opens the metadata and artifact stores named in cfg and records the
// configured sources in the metadata store.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Engine, error) {
	meta, err := OpenMetadata(ctx, cfg.Metadata)
	if err != nil {
		return nil, err
	}
	arts, err := OpenArtifacts(ctx, cfg.Storage)
	if err != nil {
		meta.Close()
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, meta: meta, artifacts: arts, runners: map[string]*runner{}}
	for i := range cfg.Sources {
		e.runners[cfg.Sources[i].Name] = &runner{cfg: &cfg.Sources[i]}
	}
	if err := e.syncSources(ctx); err != nil {
		meta.Close()
		return nil, err
	}
	return e, nil
}

// Meta is the metadata store.
func (e *Engine) Meta() store.Store { return e.meta }

// Artifacts is the artifact store.
func (e *Engine) Artifacts() artifact.Store { return e.artifacts }

// Config is the configuration the engine runs with.
func (e *Engine) Config() *config.Config { return e.cfg }

// syncSources creates metadata records for configured sources and keeps
// their slot and publication names current. Sources removed from the
// config keep their records (their backups stay restorable).
func (e *Engine) syncSources(ctx context.Context) error {
	for _, s := range e.cfg.Sources {
		existing, err := e.meta.GetSource(ctx, s.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			existing = store.Source{Name: s.Name, State: "new"}
		case err != nil:
			return fmt.Errorf("read source %s: %w", s.Name, err)
		}
		existing.SlotName, existing.PublicationName = s.Slot, s.Publication
		if cfg, err := s.ConnConfig(); err == nil && existing.Database == "" {
			existing.Database = cfg.Database
		}
		if _, err := e.meta.UpsertSource(ctx, existing); err != nil {
			return fmt.Errorf("record source %s: %w", s.Name, err)
		}
	}
	return nil
}

// Event records an engine event in the metadata store and the log.
func (e *Engine) Event(ctx context.Context, sourceID int64, level slog.Level, kind, msg string, attrs map[string]string) {
	args := []any{"kind", kind}
	for k, v := range attrs {
		args = append(args, k, v)
	}
	e.log.Log(ctx, level, msg, args...)
	lvl := map[slog.Level]string{slog.LevelDebug: "debug", slog.LevelInfo: "info", slog.LevelWarn: "warn", slog.LevelError: "error"}[level]
	if _, err := e.meta.AddEvent(ctx, store.Event{SourceID: sourceID, At: time.Now(), Level: lvl, Kind: kind, Message: msg, Attrs: attrs}); err != nil {
		e.log.Warn("could not record event", "kind", kind, "err", err)
	}
}

// Run runs every configured source until ctx is cancelled, then shuts
// down cleanly: each source stores its open segment and acknowledges it.
func (e *Engine) Run(ctx context.Context) error {
	e.Event(ctx, 0, slog.LevelInfo, "engine.started", fmt.Sprintf("btfu started with %d source(s)", len(e.cfg.Sources)),
		map[string]string{"config": e.cfg.Path, "metadata": e.cfg.Metadata.Driver, "storage": e.artifacts.String()})
	var wg sync.WaitGroup
	for _, r := range e.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runSource(ctx, r)
		}()
	}
	wg.Wait()
	e.Event(context.WithoutCancel(ctx), 0, slog.LevelInfo, "engine.stopped", "btfu stopped", nil)
	return nil
}

// Close releases the stores.
func (e *Engine) Close() error { return e.meta.Close() }
