package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
)

// register probes a configured source and, when no check fails, creates
// or adopts what the plan announces. A [[source]] in config.toml is the
// user's consent; the plan is logged. Failures leave the source in state
// "error" with the reason, and the other sources run on.
func (e *Engine) register(ctx context.Context, sc *config.Source) (*probe.Report, error) {
	src, err := e.meta.GetSource(ctx, sc.Name)
	if err != nil {
		return nil, fmt.Errorf("read source %s: %w", sc.Name, err)
	}
	fail := func(err error) (*probe.Report, error) {
		if serr := e.meta.SetSourceState(ctx, src.ID, "error", err.Error()); serr != nil {
			e.log.Warn("could not record source state", "source", sc.Name, "err", serr)
		}
		e.Event(ctx, src.ID, slog.LevelError, "source.register_failed", err.Error(), map[string]string{"source": sc.Name})
		return nil, err
	}
	r, err := probe.Run(ctx, sc, probe.Options{})
	if err != nil {
		return fail(err)
	}
	for _, c := range r.Checks {
		if c.Status == probe.Warn {
			e.Event(ctx, src.ID, slog.LevelWarn, "probe.warn", c.ID+": "+c.Finding, map[string]string{"source": sc.Name, "fix": c.Fix})
		}
	}
	g, err := probe.Register(ctx, sc, r)
	if err != nil {
		return fail(err)
	}
	pl := r.Plan
	e.Event(ctx, src.ID, slog.LevelInfo, "source.registered", fmt.Sprintf("source %s registered", sc.Name), map[string]string{
		"source":      sc.Name,
		"target":      r.Target,
		"publication": pl.Publication + " " + pl.PublicationForm,
		"tables":      fmt.Sprint(len(pl.Tables)),
		"slot":        pl.Slot,
		"ddl_capture": fmt.Sprint(pl.DDLCapture),
		"created":     strings.Join(g.Created, "; "),
		"altered":     strings.Join(g.Altered, "; "),
		"excluded":    strings.Join(pl.Excluded, ", "),
	})
	src.SystemIdentifier = r.SystemIdentifier
	if _, err := e.meta.UpsertSource(ctx, src); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	if err := e.meta.SetSourceState(ctx, src.ID, "registered", ""); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	return r, nil
}
