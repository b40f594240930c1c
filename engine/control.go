package engine

import (
	"context"
	"fmt"

	"github.com/btfu/btfu/probe"
)

// Pause stops streaming the named source and keeps its slot while the
// retained WAL stays under pause_wal_budget (DESIGN 6.3). The pause is
// recorded in the metadata store and survives restarts until Resume.
func (e *Engine) Pause(ctx context.Context, name string) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	r, ok := e.runner(name)
	if !ok {
		return fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return err
	}
	if err := e.meta.SetSourcePaused(ctx, src.ID, true); err != nil {
		return err
	}
	e.Event(ctx, src.ID, levelInfo, "source.pause", fmt.Sprintf("pause of %s asked for", name), map[string]string{"source": name})
	e.restart(r)
	return nil
}

// Resume undoes Pause. A source paused in config.toml stays paused: the
// file is the source of truth, and the error says which key to change.
func (e *Engine) Resume(ctx context.Context, name string) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	r, ok := e.runner(name)
	if !ok {
		return fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	if r.cfg.Paused {
		return fmt.Errorf("source %s is paused in %s (paused = true); set paused = false there to resume it", name, e.Config().Path)
	}
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return err
	}
	if err := e.meta.SetSourcePaused(ctx, src.ID, false); err != nil {
		return err
	}
	e.Event(ctx, src.ID, levelInfo, "source.resume", fmt.Sprintf("resume of %s asked for", name), map[string]string{"source": name})
	e.restart(r)
	return nil
}

// Probe runs the probe against the named source; it changes nothing.
func (e *Engine) Probe(ctx context.Context, name string) (*probe.Report, error) {
	r, ok := e.runner(name)
	if !ok {
		return nil, fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	return probe.Run(ctx, r.cfg, probe.Options{})
}
