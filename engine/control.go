package engine

import (
	"context"
	"fmt"

	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/probe"
)

// Pause stops streaming the named source and keeps its slot while the
// retained WAL stays under pause_wal_budget (DESIGN 6.3). The pause is
// recorded in the metadata store and survives restarts until Resume.
func (e *Engine) Pause(ctx context.Context, name string) error {
	return e.setPaused(ctx, name, true)
}

// Resume undoes Pause. A source paused in config.toml stays paused: the
// file is the source of truth, and the error says which key to change.
func (e *Engine) Resume(ctx context.Context, name string) error {
	return e.setPaused(ctx, name, false)
}

// setPaused records the source paused or not, says so, and restarts its
// runner, which reads the flag.
func (e *Engine) setPaused(ctx context.Context, name string, paused bool) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	r, ok := e.runner(name)
	if !ok {
		return fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	if !paused && r.cfg.Paused {
		return fmt.Errorf("source %s is paused in %s (paused = true); set paused = false there to resume it", name, e.Config().Path)
	}
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return err
	}
	if err := e.meta.SetSourcePaused(ctx, src.ID, paused); err != nil {
		return err
	}
	k, verb := kind.SourceResume, "resume"
	if paused {
		k, verb = kind.SourcePause, "pause"
	}
	e.Event(ctx, src.ID, levelInfo, k, fmt.Sprintf("%s of %s asked for", verb, name), map[string]string{"source": name})
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
