package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// RestoreJob is the kind of the job record every restore leaves.
const RestoreJob = "restore"

// Restore runs a planned restore of src and records it as a job, so
// `btfu status` and the TUI show the last restore and how it ended. An
// interrupted restore says the target is partial.
func Restore(ctx context.Context, meta store.Store, arts artifact.Store, src store.Source, plan *restore.Plan, opts restore.Options) (restore.Summary, error) {
	opts.SourceSystemID, opts.SourceDatabase, opts.SourcePublication = src.SystemIdentifier, src.Database, src.PublicationName
	// Recorded even when the restore is cancelled at once: a restore
	// stopped before it began is still one the user asked for.
	job, jerr := meta.StartJob(context.WithoutCancel(ctx), store.Job{SourceID: src.ID, Kind: RestoreJob, StartedAt: time.Now(), Detail: plan.Target.String()})
	sum, err := restore.Run(ctx, meta, arts, src.ID, plan, opts)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted: the target is partial and must not be used; drop it and restore again (%w)", err)
	}
	if jerr == nil {
		status, errText := store.JobOK, ""
		if err != nil {
			status, errText = store.JobFailed, redact.String(err.Error())
		}
		detail := fmt.Sprintf("%s into %s: %d transactions, %d rows, %d sequences, %s", plan.Target, redact.DSN(opts.TargetDSN),
			sum.Transactions, sum.Rows, sum.Sequences, sum.Took.Round(time.Millisecond))
		_ = meta.FinishJob(context.WithoutCancel(ctx), job.ID, status, detail, errText, time.Now())
	}
	return sum, err
}

// Restore restores the named source with the engine's stores.
func (e *Engine) Restore(ctx context.Context, name string, plan *restore.Plan, opts restore.Options) (restore.Summary, error) {
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return restore.Summary{}, err
	}
	e.Event(ctx, src.ID, levelInfo, kind.RestoreStarted, fmt.Sprintf("restore of %s into %s started: %s", name, redact.DSN(opts.TargetDSN), plan.Target), map[string]string{"source": name})
	sum, err := Restore(ctx, e.meta, e.artifacts, src, plan, opts)
	if err != nil {
		e.Event(context.WithoutCancel(ctx), src.ID, levelError, kind.RestoreFailed, fmt.Sprintf("restore of %s failed: %v", name, err), map[string]string{"source": name})
		return sum, err
	}
	e.Event(ctx, src.ID, levelInfo, kind.RestoreFinished, fmt.Sprintf("restore of %s finished: %d transactions, %d rows in %s", name, sum.Transactions, sum.Rows, sum.Took.Round(time.Millisecond)), map[string]string{"source": name})
	return sum, nil
}

// PlanRestore plans a restore of the named source to t.
func (e *Engine) PlanRestore(ctx context.Context, name string, t restore.Target) (*restore.Plan, error) {
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return nil, err
	}
	return restore.MakePlan(ctx, e.meta, src.ID, t)
}

// lastRestore returns the source's newest restore job, if any.
func lastRestore(ctx context.Context, meta store.Store, sourceID int64) (*RestoreRecord, error) {
	jobs, err := meta.ListJobs(ctx, sourceID, 20)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.Kind == RestoreJob {
			r := &RestoreRecord{StartedAt: j.StartedAt, Status: j.Status, Detail: j.Detail, Error: j.Error}
			if !j.FinishedAt.IsZero() {
				t := j.FinishedAt
				r.FinishedAt = &t
			}
			return r, nil
		}
	}
	return nil, nil
}

// RestoreRecord is the last restore of a source, as status shows it.
type RestoreRecord struct {
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Status     string     `json:"status"`
	Detail     string     `json:"detail"`
	Error      string     `json:"error,omitempty"`
}

// Coverage returns the named source's chains, base backups, segments and
// restorable ranges (the TUI's timeline, the control API).
func (e *Engine) Coverage(ctx context.Context, name string) (coverage.Source, error) {
	src, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return coverage.Source{}, err
	}
	return coverage.Load(ctx, e.meta, src.ID)
}

// SourceRecord is the named source's metadata record.
func (e *Engine) SourceRecord(ctx context.Context, name string) (store.Source, error) {
	return e.meta.GetSource(ctx, name)
}
