package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/store"
)

// Status is a snapshot of every source, as `btfu status --json` prints it.
type Status struct {
	Sources []SourceStatus `json:"sources"`
}

// SourceStatus describes one source.
type SourceStatus struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Paused bool   `json:"paused"`
	// Streaming: changes are being stored (also while a later base
	// backup runs beside the stream); false during the first base backup
	// of a chain, before anything is restorable.
	Streaming   bool       `json:"streaming"`
	FlushedLSN  string     `json:"flushed_lsn"`
	FlushedTime *time.Time `json:"flushed_time"`
	// RPOSeconds is the age of the newest stored commit or keepalive: what
	// a failure right now would lose at most.
	RPOSeconds    *float64 `json:"rpo_seconds,omitempty"`
	MaxLagSeconds float64  `json:"max_lag_seconds"`
	SourceLSN     string   `json:"source_lsn,omitempty"`
	LagBytes      *int64   `json:"lag_bytes,omitempty"`
	TxPerSec      float64  `json:"tx_per_sec"`
	BytesPerSec   float64  `json:"bytes_per_sec"`
	LagHistory    []int64  `json:"lag_history,omitempty"` // lag bytes, one per sample (2 s), oldest first
	RetainedBytes *int64   `json:"retained_wal_bytes,omitempty"`
	WALBudget     int64    `json:"wal_budget_bytes"` // retained WAL past which the slot is dropped
	// EncryptedTo is how many age recipients new artifacts of the source
	// are encrypted to (0: stored unencrypted).
	EncryptedTo  int             `json:"encrypted_to"`
	LastBackup   *BackupInfo     `json:"last_base_backup,omitempty"`
	NextBackup   *time.Time      `json:"next_base_backup,omitempty"`
	Coverage     []CoverageRange `json:"coverage"`
	BaseBackups  int             `json:"base_backups"`
	Segments     int             `json:"segments"`
	SegmentBytes int64           `json:"segment_bytes"`
	LastRestore  *RestoreRecord  `json:"last_restore,omitempty"`
	LastDrill    *DrillInfo      `json:"last_drill,omitempty"` // drill.go
	NextDrill    *time.Time      `json:"next_drill,omitempty"`
	LastError    string          `json:"last_error"`
	// LeftOut names the tables not backed up now: no usable replica
	// identity (tables_without_key = "leave_out"), or they lost it.
	LeftOut []string `json:"left_out_tables,omitempty"`
	// Attention, when set, is what the user must look at (the TUI's red
	// line; /health fails).
	Attention string `json:"attention,omitempty"`

	// WALBudget above is max_retained_wal, or while paused the smaller of
	// it and pause_wal_budget. WALStatus and SafeWALSize are the slot's,
	// from pg_replication_slots (SafeWALSize only with
	// max_slot_wal_keep_size set).
	WALStatus   string `json:"wal_status,omitempty"`
	SafeWALSize *int64 `json:"safe_wal_size,omitempty"`
	// Error is what keeps capture from progressing (state "error").
	Error *CaptureError `json:"error,omitempty"`
	// CaptureErrors counts failed capture attempts by category since the
	// source's worker started.
	CaptureErrors map[string]int64 `json:"capture_errors,omitempty"`
}

// CaptureError is the failure a stuck capture keeps meeting.
type CaptureError struct {
	Category string    `json:"category"`
	LSN      string    `json:"lsn"`
	Message  string    `json:"message"`
	Since    time.Time `json:"since"`
	Attempts int       `json:"attempts"`
}

// BackupInfo describes a completed base backup.
type BackupInfo struct {
	At       time.Time     `json:"at"`
	Key      string        `json:"key"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"duration_ns"`
	LSN      string        `json:"consistent_lsn"`
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
	if cfg == nil {
		return Status{Sources: []SourceStatus{}}, nil
	}
	st := Status{Sources: []SourceStatus{}}
	for _, sc := range cfg.Sources {
		ss := SourceStatus{Name: sc.Name, State: store.StateStopped, FlushedLSN: "0/0", Coverage: []CoverageRange{},
			MaxLagSeconds: sc.MaxLag.D().Seconds(), WALBudget: int64(sc.MaxRetainedWAL), Paused: sc.Paused,
			EncryptedTo: len(cfg.Storage.RecipientsFor(sc.Name))}
		src, err := meta.GetSource(ctx, sc.Name)
		if errors.Is(err, store.ErrNotFound) {
			ss.State = store.StateNew
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
		ss.Paused = ss.Paused || src.Paused
		if ss.Paused {
			ss.WALBudget = int64(min(sc.PauseWALBudget, sc.MaxRetainedWAL))
		}
		if ss.LastRestore, err = lastRestore(ctx, meta, src.ID); err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		if ss.LastDrill, err = lastDrill(ctx, meta, src.ID); err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		cov, err := coverage.Load(ctx, meta, src.ID)
		if err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		for _, b := range cov.Bases {
			if b.Status == store.BackupComplete {
				ss.BaseBackups++
				if ss.LastBackup == nil || b.FinishedAt.After(ss.LastBackup.At) {
					ss.LastBackup = &BackupInfo{At: b.FinishedAt, Key: b.ArtifactKey, Bytes: b.SizeBytes, Duration: b.FinishedAt.Sub(b.StartedAt), LSN: b.ConsistentLSN.String()}
				}
			}
		}
		ss.Segments = len(cov.Segments)
		for _, g := range cov.Segments {
			ss.SegmentBytes += g.StoredBytes
		}
		for _, ch := range cov.Chains {
			if ch.EndedAt.IsZero() {
				ss.FlushedLSN = ch.CursorLSN.String()
				if !ch.CursorTime.IsZero() {
					t := ch.CursorTime
					ss.FlushedTime = &t
					rpo := time.Since(t).Seconds()
					ss.RPOSeconds = &rpo
				}
			}
		}
		for _, r := range cov.Ranges {
			ss.Coverage = append(ss.Coverage, CoverageRange{FromLSN: r.FromLSN.String(), ToLSN: r.ToLSN.String(), FromTime: r.FromTime, ToTime: r.ToTime})
		}
		if ss.LeftOut, err = leftOutTables(ctx, meta, src.ID); err != nil {
			return st, fmt.Errorf("status of %s: %w", sc.Name, err)
		}
		ss.Attention = attention(ss)
		st.Sources = append(st.Sources, ss)
	}
	return st, nil
}

// attention says what needs the user, most urgent first; "" when the
// source is protected as configured.
func attention(ss SourceStatus) string {
	switch {
	case ss.State == store.StateError || ss.State == store.StateReconnecting:
		return ss.State + ": " + ss.LastError
	case ss.State == store.StateUnregistered:
		return "unregistered: nothing is captured (btfu unregister removed btfu's objects from the source); remove the source from config.toml, or start btfu to register it again"
	case ss.RetainedBytes != nil && ss.WALBudget > 0 && float64(*ss.RetainedBytes) >= capture.WALWarnFraction*float64(ss.WALBudget):
		return fmt.Sprintf("the slot holds %s of WAL on the source, %.0f%% of its budget of %s: past it btfu drops the slot (a gap in the backups, then a new base backup)",
			human.Bytes(*ss.RetainedBytes), 100*float64(*ss.RetainedBytes)/float64(ss.WALBudget), human.Bytes(ss.WALBudget))
	case ss.WALStatus == "unreserved" || ss.WALStatus == "lost":
		return fmt.Sprintf("the slot's wal_status is %s: the server (max_slot_wal_keep_size) is about to invalidate it or has", ss.WALStatus)
	case ss.LastDrill != nil && ss.LastDrill.Status == store.DrillFailed:
		why := "the last restore drill failed (" + ss.LastDrill.Category + "): " + ss.LastDrill.Error
		if ss.LastDrill.Hint != "" {
			why += "; " + ss.LastDrill.Hint
		}
		return why + " (btfu drill runs one again)"
	case ss.Paused:
		return "paused: changes are not being captured"
	case ss.BaseBackups == 0 && ss.State != store.StateNew:
		return "no base backup yet: nothing is restorable"
	case ss.RPOSeconds != nil && *ss.RPOSeconds > ss.MaxLagSeconds && ss.State != store.StateStopped:
		return fmt.Sprintf("newest stored change is %s old, over max_lag %s", time.Duration(*ss.RPOSeconds*1e9).Round(time.Second), time.Duration(ss.MaxLagSeconds*1e9))
	case len(ss.LeftOut) > 0:
		names := strings.Join(ss.LeftOut, ", ")
		if len(ss.LeftOut) > 5 {
			names = strings.Join(ss.LeftOut[:5], ", ") + fmt.Sprintf(" and %d more", len(ss.LeftOut)-5)
		}
		return fmt.Sprintf("%d table(s) NOT backed up (no primary key or replica identity): %s; add a key, or set tables_without_key = \"replica_identity_full\"", len(ss.LeftOut), names)
	}
	return ""
}

// leftOutTables lists the tables not backed up now.
func leftOutTables(ctx context.Context, meta store.Store, sourceID int64) ([]string, error) {
	recs, err := meta.ListTableCoverage(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	return store.LeftOutNow(recs), nil
}

// Status reads the status of every configured source, with what the
// running workers know on top of the metadata: live state, the source's
// WAL position and the lag behind it.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	st, err := ReadStatus(ctx, e.meta, e.Config())
	if err != nil {
		return st, err
	}
	for i := range st.Sources {
		ss := &st.Sources[i]
		r, _ := e.runner(ss.Name)
		if r == nil {
			continue
		}
		hist := e.hist.get(ss.Name)
		r.mu.Lock()
		next := r.next
		r.mu.Unlock()
		if !next.IsZero() {
			ss.NextBackup = &next
		}
		ss.NextDrill = e.nextDrill(ss.Name)
		w := r.getWorker()
		if w == nil {
			r.mu.Lock()
			if n := r.pausedRetained; n > 0 && ss.Paused {
				ss.RetainedBytes = &n
				ss.Attention = attention(*ss)
			}
			r.mu.Unlock()
			continue
		}
		ws := w.Status()
		if ws.State != "" {
			ss.State = ws.State
			ss.Streaming = ws.State == store.StateStreaming
			if ws.BackingUp {
				ss.State = store.StateBackingUp
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
		if ws.RetainedBytes > 0 {
			n := ws.RetainedBytes
			ss.RetainedBytes = &n
		}
		if ws.WALBudget > 0 && !ss.Paused {
			ss.WALBudget = ws.WALBudget
		}
		if ws.SafeWALSize >= 0 && ws.WALStatus != "" {
			n := ws.SafeWALSize
			ss.SafeWALSize = &n
		}
		ss.WALStatus = ws.WALStatus
		if f := ws.Error; f != nil {
			ss.Error = &CaptureError{Category: f.Category, LSN: f.LSN.String(), Message: f.Message, Since: f.Since, Attempts: f.Attempts}
		}
		ss.CaptureErrors = ws.Errors
		if !ws.FlushedAt.IsZero() {
			rpo := time.Since(ws.FlushedAt).Seconds()
			ss.RPOSeconds = &rpo
		}
		ss.TxPerSec, ss.BytesPerSec = rates(hist, 30*time.Second)
		for _, h := range hist {
			ss.LagHistory = append(ss.LagHistory, h.LagBytes)
		}
		ss.Attention = attention(*ss)
	}
	return st, nil
}
