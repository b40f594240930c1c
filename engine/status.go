package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/store"
)

// Status is a snapshot of every source, as `btfu status --json` prints it.
type Status struct {
	Sources []SourceStatus `json:"sources"`
}

// SourceStatus describes one source.
type SourceStatus struct {
	Name        string          `json:"name"`
	State       string          `json:"state"`
	FlushedLSN  string          `json:"flushed_lsn"`
	FlushedTime *time.Time      `json:"flushed_time"`
	SourceLSN   string          `json:"source_lsn,omitempty"`
	LagBytes    *int64          `json:"lag_bytes,omitempty"`
	NextBackup  *time.Time      `json:"next_base_backup,omitempty"`
	Coverage    []CoverageRange `json:"coverage"`
	BaseBackups int             `json:"base_backups"`
	Segments    int             `json:"segments"`
	LastError   string          `json:"last_error"`
}

// CoverageRange is one restorable range.
type CoverageRange struct {
	FromLSN  string    `json:"from_lsn"`
	ToLSN    string    `json:"to_lsn"`
	FromTime time.Time `json:"from_time"`
	ToTime   time.Time `json:"to_time"`
}

// ReadStatus builds the status of every configured source from the
// metadata store alone, so it works whether or not an engine is running.
func ReadStatus(ctx context.Context, meta store.Store, cfg *config.Config) (Status, error) {
	st := Status{Sources: []SourceStatus{}}
	for _, sc := range cfg.Sources {
		ss := SourceStatus{Name: sc.Name, State: "stopped", FlushedLSN: "0/0", Coverage: []CoverageRange{}}
		src, err := meta.GetSource(ctx, sc.Name)
		if errors.Is(err, store.ErrNotFound) {
			ss.State = "new"
			st.Sources = append(st.Sources, ss)
			continue
		}
		if err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		if src.State != "" {
			ss.State = src.State
		}
		ss.LastError = src.LastError
		cov, err := coverage.Load(ctx, meta, src.ID)
		if err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		for _, b := range cov.Bases {
			if b.Status == store.BackupComplete {
				ss.BaseBackups++
			}
		}
		ss.Segments = len(cov.Segments)
		for _, ch := range cov.Chains {
			if ch.EndedAt.IsZero() {
				ss.FlushedLSN = ch.CursorLSN.String()
				if !ch.CursorTime.IsZero() {
					t := ch.CursorTime
					ss.FlushedTime = &t
				}
			}
		}
		for _, r := range cov.Ranges {
			ss.Coverage = append(ss.Coverage, CoverageRange{FromLSN: r.FromLSN.String(), ToLSN: r.ToLSN.String(), FromTime: r.FromTime, ToTime: r.ToTime})
		}
		st.Sources = append(st.Sources, ss)
	}
	return st, nil
}

// Status reads the status of every configured source, with what the
// running workers know on top of the metadata: live state, the source's
// WAL position and the lag behind it.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	st, err := ReadStatus(ctx, e.meta, e.cfg)
	if err != nil {
		return st, err
	}
	for i := range st.Sources {
		ss := &st.Sources[i]
		r := e.runners[ss.Name]
		if r == nil {
			continue
		}
		r.mu.Lock()
		next := r.next
		r.mu.Unlock()
		if !next.IsZero() {
			ss.NextBackup = &next
		}
		w := r.getWorker()
		if w == nil {
			continue
		}
		ws := w.Status()
		if ws.State != "" {
			ss.State = ws.State
			if ws.BackingUp {
				ss.State = "backing_up"
			}
			ss.LastError = ws.LastError
		}
		if ws.SourceLSN != 0 {
			ss.SourceLSN = ws.SourceLSN.String()
			lag := int64(0)
			if ws.SourceLSN > ws.FlushedLSN {
				lag = int64(ws.SourceLSN - ws.FlushedLSN)
			}
			ss.LagBytes = &lag
		}
	}
	return st, nil
}
