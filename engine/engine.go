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
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Engine owns the stores and the per-source state.
type Engine struct {
	log       *slog.Logger
	meta      store.Store
	artifacts artifact.Store
	events    broker

	// ctl serialises commands that start or stop runners (pause, resume,
	// reload); mu guards cfg and runners for readers.
	ctl     sync.Mutex
	mu      sync.Mutex
	cfg     *config.Config
	runners map[string]*runner
	runCtx  context.Context // set while Run runs; runners start under it
	hist    history
	drills  drills   // drill.go
	hk      sync.Map // source ID -> *sync.Mutex, see housekeeping (compact.go)
}

const (
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

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
	if err := e.syncSources(ctx, cfg); err != nil {
		meta.Close()
		return nil, err
	}
	return e, nil
}

// Meta is the metadata store.
func (e *Engine) Meta() store.Store { return e.meta }

// Artifacts is the artifact store.
func (e *Engine) Artifacts() artifact.Store { return e.artifacts }

// Config is the configuration the engine runs with (the newest one
// applied by Reload).
func (e *Engine) Config() *config.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

func (e *Engine) runner(name string) (*runner, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runners[name]
	return r, ok
}

// syncSources creates metadata records for configured sources and keeps
// their slot and publication names current. Sources removed from the
// config keep their records (their backups stay restorable).
func (e *Engine) syncSources(ctx context.Context, cfg *config.Config) error {
	for i := range cfg.Sources {
		if _, err := recordSource(ctx, e.meta, &cfg.Sources[i]); err != nil {
			return err
		}
	}
	return nil
}

// recordSource creates the metadata record of a configured source, new
// until it registers, or brings its slot and publication names up to
// date, and returns the record as stored.
func recordSource(ctx context.Context, meta store.Store, s *config.Source) (store.Source, error) {
	existing, err := meta.GetSource(ctx, s.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		existing = store.Source{Name: s.Name, State: store.StateNew}
	case err != nil:
		return store.Source{}, fmt.Errorf("read source %s: %w", s.Name, err)
	}
	existing.SlotName, existing.PublicationName = s.Slot, s.Publication
	if cfg, err := s.ConnConfig(); err == nil && existing.Database == "" {
		existing.Database = cfg.Database
	}
	rec, err := meta.UpsertSource(ctx, existing)
	if err != nil {
		return store.Source{}, fmt.Errorf("record source %s: %w", s.Name, err)
	}
	return rec, nil
}

// Event records an engine event in the metadata store and the log, and
// hands it to every subscriber. attrs["source"] names the source.
func (e *Engine) Event(ctx context.Context, sourceID int64, level slog.Level, k kind.Kind, msg string, attrs map[string]string) {
	args := []any{"kind", string(k)}
	for k, v := range attrs {
		args = append(args, k, v)
	}
	e.log.Log(ctx, level, msg, args...)
	now := time.Now()
	e.events.publish(EventRecord{At: now, Source: attrs["source"], Level: level, Kind: string(k), Message: redact.String(msg), Attrs: attrs})
	lvl := map[slog.Level]string{slog.LevelDebug: "debug", slog.LevelInfo: "info", slog.LevelWarn: "warn", slog.LevelError: "error"}[level]
	if _, err := e.meta.AddEvent(context.WithoutCancel(ctx), store.Event{SourceID: sourceID, At: now, Level: lvl, Kind: string(k), Message: msg, Attrs: attrs}); err != nil {
		e.log.Warn("could not record event", "kind", string(k), "err", err)
	}
}

// Run runs every configured source until ctx is cancelled, then shuts
// down cleanly: each source stores its open segment and acknowledges it.
// Sources added, removed, paused or resumed while it runs start and stop
// under the same context.
func (e *Engine) Run(ctx context.Context) error {
	defer e.runNotifications(ctx)() // notifications (events.go) while it runs
	cfg := e.Config()
	e.Event(ctx, 0, slog.LevelInfo, kind.EngineStarted, fmt.Sprintf("btfu started with %d source(s)", len(cfg.Sources)),
		map[string]string{"config": cfg.Path, "metadata": cfg.Metadata.Driver, "storage": e.artifacts.String()})
	e.ctl.Lock()
	e.mu.Lock()
	e.runCtx = ctx
	rs := make([]*runner, 0, len(e.runners))
	for _, r := range e.runners {
		rs = append(rs, r)
	}
	e.mu.Unlock()
	for _, r := range rs {
		e.start(r)
	}
	e.ctl.Unlock()
	sampled := make(chan struct{})
	go func() { defer close(sampled); e.sample(ctx) }()

	<-ctx.Done()
	e.ctl.Lock()
	e.mu.Lock()
	rs = rs[:0]
	for _, r := range e.runners {
		rs = append(rs, r)
	}
	e.mu.Unlock()
	for _, r := range rs {
		e.stop(r)
	}
	e.ctl.Unlock()
	<-sampled
	e.Event(context.WithoutCancel(ctx), 0, slog.LevelInfo, kind.EngineStopped, "btfu stopped", nil)
	return nil
}

// start runs r under the engine's run context; callers hold ctl.
func (e *Engine) start(r *runner) {
	ctx, cancel := context.WithCancel(e.runCtx)
	done := make(chan struct{})
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	go func() {
		defer close(done)
		e.runSource(ctx, r)
	}()
}

// stop cancels r and waits until it has stored and acknowledged what it
// holds; callers hold ctl.
func (e *Engine) stop(r *runner) {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// restart stops and starts r when the engine runs; callers hold ctl.
func (e *Engine) restart(r *runner) {
	e.mu.Lock()
	running := e.runCtx != nil && e.runCtx.Err() == nil
	e.mu.Unlock()
	if !running {
		return
	}
	e.stop(r)
	e.start(r)
}

// Close releases the stores.
func (e *Engine) Close() error { return e.meta.Close() }
