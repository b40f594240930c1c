package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/probe"
	"github.com/btfu/btfu/sourcedb"
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
		if serr := e.meta.SetSourceState(ctx, src.ID, store.StateError, err.Error()); serr != nil {
			e.log.Warn("could not record source state", "source", sc.Name, "err", serr)
		}
		e.Event(ctx, src.ID, slog.LevelError, kind.SourceRegisterFailed, err.Error(), map[string]string{"source": sc.Name})
		return nil, err
	}
	r, err := probe.Run(ctx, sc, probe.Options{})
	if err != nil {
		return fail(err)
	}
	for _, c := range r.Checks {
		if c.Status == probe.Warn {
			e.Event(ctx, src.ID, slog.LevelWarn, kind.ProbeWarn, c.ID+": "+c.Finding, map[string]string{"source": sc.Name, "fix": c.Fix})
		}
	}
	if err := r.Registrable(sc.Name); err != nil {
		return fail(err)
	}
	g, err := sourcedb.Register(ctx, sc, &r.Plan, r.Tables)
	if err != nil {
		return fail(err)
	}
	pl := r.Plan
	e.Event(ctx, src.ID, slog.LevelInfo, kind.SourceRegistered, fmt.Sprintf("source %s registered", sc.Name), map[string]string{
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
	if err := e.recordAddedTables(ctx, sc, src.ID, g); err != nil {
		return r, err
	}
	src.SystemIdentifier = r.SystemIdentifier
	if _, err := e.meta.UpsertSource(ctx, src); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	if err := e.meta.SetSourceState(ctx, src.ID, store.StateRegistered, ""); err != nil {
		return r, fmt.Errorf("record source %s: %w", sc.Name, err)
	}
	return r, nil
}

// recordAddedTables records the tables that registration added to the
// source's publication; the base backup that makes them restorable is
// taken when the worker streams (baseBackupDue).
func (e *Engine) recordAddedTables(ctx context.Context, sc *config.Source, sourceID int64, g *sourcedb.Registration) error {
	recorded, err := recordAdded(ctx, e.meta, sourceID, g)
	if err != nil || !recorded {
		return err
	}
	e.Event(ctx, sourceID, levelInfo, kind.PublicationTableAdded, fmt.Sprintf("table(s) %s added to publication %s, covered from %s; a base backup follows", strings.Join(g.AddedTables, ", "), sc.Publication, g.AddedLSN), map[string]string{"source": sc.Name})
	return nil
}

// RecordRegistration records the tables a registration of the named
// source added to its publication (g.AddedTables), as the engine does
// when it registers the source itself: 'btfu register' calls it on the
// same metadata store. It reports whether they were recorded: a source
// that has no chain yet needs no record, its first base backup holds
// every table. Recorded tables are left out (and named) by restores from
// older base backups, and the engine takes a base backup when it next
// starts the source (baseBackupDue), unless one is taken before.
func RecordRegistration(ctx context.Context, meta store.Store, name string, g *sourcedb.Registration) (bool, error) {
	if len(g.AddedTables) == 0 {
		return false, nil
	}
	src, err := meta.GetSource(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read source %s: %w", name, err)
	}
	return recordAdded(ctx, meta, src.ID, g)
}

func recordAdded(ctx context.Context, meta store.Store, sourceID int64, g *sourcedb.Registration) (bool, error) {
	if len(g.AddedTables) == 0 {
		return false, nil
	}
	chains, err := meta.ListChains(ctx, sourceID)
	if err != nil || len(chains) == 0 {
		return false, err
	}
	return true, capture.RecordJoined(ctx, meta, sourceID, g.AddedTables, g.AddedLSN, time.Now())
}

// baseBackupDue says why a base backup is due as soon as the source
// streams: tables joined its publication after the newest complete base
// backup of its open chain, so restores leave them out until one is
// taken. It is read from the records, so a base backup owed to tables
// that 'btfu register' added while btfu was not running, or that joined
// before btfu stopped, is still taken at the next start. Without an open
// chain with a base backup none is due: the worker starts with one.
func baseBackupDue(ctx context.Context, meta store.Store, sourceID int64) (string, error) {
	chains, err := meta.ListChains(ctx, sourceID)
	if err != nil {
		return "", err
	}
	open := map[int64]bool{}
	for _, ch := range chains {
		if ch.EndedAt.IsZero() {
			open[ch.ID] = true
		}
	}
	bases, err := meta.ListBaseBackups(ctx, sourceID)
	if err != nil {
		return "", err
	}
	var newest pglogrepl.LSN
	for _, b := range bases {
		if open[b.ChainID] && b.Status == store.BackupComplete && b.ConsistentLSN > newest {
			newest = b.ConsistentLSN
		}
	}
	if newest == 0 {
		return "", nil
	}
	recs, err := meta.ListTableCoverage(ctx, sourceID)
	if err != nil {
		return "", err
	}
	// Each table's newest record says whether it is in the publication.
	last := map[string]store.TableCoverage{}
	var order []string
	for _, c := range recs {
		if _, seen := last[c.Table]; !seen {
			order = append(order, c.Table)
		}
		last[c.Table] = c
	}
	var joined []string
	for _, t := range order {
		if c := last[t]; !c.LeftOut && c.Reason != store.TableDropped && c.FromLSN > newest {
			joined = append(joined, t)
		}
	}
	if len(joined) == 0 {
		return "", nil
	}
	return fmt.Sprintf("table(s) %s joined the publication after the newest base backup", strings.Join(joined, ", ")), nil
}
