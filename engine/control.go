package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/store"
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
	if !paused {
		if err := ResumeAllowed(e.Config().Path, r.cfg); err != nil {
			return err
		}
	}
	src, _, err := RecordPaused(ctx, e.meta, r.cfg, paused)
	if err != nil {
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

// ResumeAllowed refuses to resume a source that config.toml at path
// pauses: the file is the source of truth, and the error says which key
// to change. Resuming at run time and recording a resume for the next
// start both ask it first.
func ResumeAllowed(path string, src *config.Source) error {
	if src.Paused {
		return fmt.Errorf("source %s is paused in %s (paused = true); set paused = false there to resume it", src.Name, path)
	}
	return nil
}

// RecordPaused records in meta that src is paused or not, where a
// starting engine reads it: the running engine's Pause and Resume write
// it so, and so does a pause or resume asked for while no btfu runs.
// Pausing a source that never ran records it as the engine records a
// configured source (recordSource), paused. Resuming one changes nothing
// and returns the zero Source (ID 0): it never ran, so it is not paused.
// rec is the source's record with the flag as stored; changed says
// whether the flag changed. Callers resuming ask ResumeAllowed first.
func RecordPaused(ctx context.Context, meta store.Store, src *config.Source, paused bool) (rec store.Source, changed bool, err error) {
	rec, err = meta.GetSource(ctx, src.Name)
	switch {
	case errors.Is(err, store.ErrNotFound) && paused:
		rec, err = recordSource(ctx, meta, src)
	case errors.Is(err, store.ErrNotFound):
		return store.Source{}, false, nil
	}
	if err != nil {
		return store.Source{}, false, err
	}
	if rec.Paused == paused {
		return rec, false, nil
	}
	if err := meta.SetSourcePaused(ctx, rec.ID, paused); err != nil {
		return store.Source{}, false, err
	}
	rec.Paused = paused
	return rec, true, nil
}

// Probe runs the probe against the named source; it changes nothing.
func (e *Engine) Probe(ctx context.Context, name string) (*probe.Report, error) {
	r, ok := e.runner(name)
	if !ok {
		return nil, fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	return probe.Run(ctx, r.cfg, probe.Options{})
}
