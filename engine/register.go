package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/store"
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
	if len(g.AddedTables) > 0 {
		if err := e.recordAddedTables(ctx, sc, src.ID, g); err != nil {
			return r, err
		}
	}
	src.SystemIdentifier = r.SystemIdentifier
	if _, err := e.meta.UpsertSource(ctx, src); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	if err := e.meta.SetSourceState(ctx, src.ID, "registered", ""); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	return r, nil
}

// recordAddedTables records from which LSN tables that registration added
// to an existing publication are covered, and asks for a base backup once
// the source streams, when the source already has a chain (otherwise its
// first base backup covers them).
func (e *Engine) recordAddedTables(ctx context.Context, sc *config.Source, sourceID int64, g *probe.Registration) error {
	chains, err := e.meta.ListChains(ctx, sourceID)
	if err != nil {
		return err
	}
	if len(chains) == 0 {
		return nil
	}
	for _, t := range g.AddedTables {
		if _, err := e.meta.AddTableCoverage(ctx, store.TableCoverage{SourceID: sourceID, Table: t, FromLSN: g.AddedLSN, AddedAt: time.Now()}); err != nil {
			return fmt.Errorf("record coverage of %s: %w", t, err)
		}
	}
	if r, ok := e.runner(sc.Name); ok {
		r.mu.Lock()
		r.backupOnStart = "tables added at registration"
		r.mu.Unlock()
	}
	e.Event(ctx, sourceID, levelInfo, "publication.table_added", fmt.Sprintf("table(s) %s added to publication %s, covered from %s; a base backup follows", strings.Join(g.AddedTables, ", "), sc.Publication, g.AddedLSN), map[string]string{"source": sc.Name})
	return nil
}
