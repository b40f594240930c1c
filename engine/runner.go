package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

// registerRetry is how long a source whose registration failed waits
// before the next attempt.
var registerRetry = time.Minute

// pauseCheckEvery is how often a paused source's retained WAL is checked.
var pauseCheckEvery = 30 * time.Second

// runner is one configured source inside the running engine.
type runner struct {
	cfg    *config.Source
	mu     sync.Mutex
	worker *capture.Worker
	next   time.Time // next scheduled base backup
	cancel context.CancelFunc
	done   chan struct{}
	// pausedRetained is the WAL a paused source's slot holds, as last
	// measured (0 when unknown or not paused).
	pausedRetained int64
}

func (r *runner) getWorker() *capture.Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.worker
}

// runSource registers the source (retrying while it fails), then streams
// it or, when paused, watches its slot's WAL against the budget.
func (e *Engine) runSource(ctx context.Context, r *runner) {
	sc := r.cfg
	for {
		if _, err := e.register(ctx, sc); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(registerRetry):
		}
	}
	src, err := e.meta.GetSource(ctx, sc.Name)
	if err != nil {
		e.log.Error("read source", "source", sc.Name, "err", err)
		return
	}
	cctx, stopCompaction := context.WithCancel(ctx)
	compacted := make(chan struct{})
	go func() { defer close(compacted); e.compactLoop(cctx, sc, src) }()
	defer func() { stopCompaction(); <-compacted }()
	if sc.Paused || src.Paused {
		e.watchPaused(ctx, sc, src.ID)
		return
	}
	due, err := baseBackupDue(ctx, e.meta, src.ID)
	if err != nil {
		e.log.Warn("could not tell whether tables joined since the newest base backup", "source", sc.Name, "err", err)
	}
	w := &capture.Worker{Source: sc, SourceID: src.ID, BackupOnStart: due, Meta: e.meta, Artifacts: e.artifacts, Log: e.log, SpoolDir: e.spoolDir(),
		AfterBackup: func(ctx context.Context, b store.BaseBackup) { e.afterBackup(ctx, sc, src.ID, b) },
		Notify: func(ctx context.Context, level slog.Level, k kind.Kind, msg string) {
			e.Event(ctx, src.ID, level, k, msg, map[string]string{"source": sc.Name})
		}}
	r.mu.Lock()
	r.worker = w
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.worker, r.next = nil, time.Time{}
		r.mu.Unlock()
	}()
	if stop, err := e.schedule(r, w); err != nil {
		e.Event(ctx, src.ID, slog.LevelError, kind.ScheduleFailed, err.Error(), map[string]string{"source": sc.Name})
	} else {
		defer stop()
	}
	defer e.startDrills(ctx, sc, src.ID)() // drill.go
	if err := w.Run(ctx); err != nil {
		e.Event(ctx, src.ID, slog.LevelError, kind.CaptureFailed, err.Error(), map[string]string{"source": sc.Name})
	}
}

func (e *Engine) spoolDir() string {
	if d := e.Config().Engine.SpoolDir; d != "" {
		return d
	}
	return os.TempDir()
}

// schedule starts the source's base-backup cron job in its time zone.
func (e *Engine) schedule(r *runner, w *capture.Worker) (stop func(), err error) {
	sc := r.cfg
	if config.ScheduleOff(sc.Schedule) {
		return func() {}, nil
	}
	job, stop, err := cronJob(sc, "schedule", sc.Schedule, func() {
		ctx := context.Background()
		if _, err := w.BackupNow(ctx); err != nil {
			e.Event(ctx, w.SourceID, slog.LevelError, kind.BackupFailed, "scheduled base backup failed: "+err.Error(), map[string]string{"source": sc.Name})
		}
	})
	if err != nil {
		return nil, err
	}
	if next, err := job.NextRun(); err == nil {
		r.mu.Lock()
		r.next = next
		r.mu.Unlock()
	}
	return stop, nil
}

// cronJob runs task on the five-field cron spec (config key key of
// source sc) in the source's time zone, never two at once (a run still
// going when the next is due moves it on), until stop is called.
func cronJob(sc *config.Source, key, spec string, task func()) (job gocron.Job, stop func(), err error) {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		return nil, nil, fmt.Errorf("source.%s.timezone: %w", sc.Name, err)
	}
	s, err := gocron.NewScheduler(gocron.WithLocation(loc))
	if err != nil {
		return nil, nil, err
	}
	job, err = s.NewJob(gocron.CronJob(spec, false), gocron.NewTask(task), gocron.WithSingletonMode(gocron.LimitModeReschedule))
	if err != nil {
		s.Shutdown()
		return nil, nil, fmt.Errorf("source.%s.%s: %w", sc.Name, key, err)
	}
	s.Start()
	return job, func() { _ = s.Shutdown() }, nil
}

// afterBackup records the base backup and applies retention.
func (e *Engine) afterBackup(ctx context.Context, sc *config.Source, sourceID int64, b store.BaseBackup) {
	e.Event(ctx, sourceID, slog.LevelInfo, kind.BackupFinished, fmt.Sprintf("base backup of %s complete at %s", sc.Name, b.ConsistentLSN),
		map[string]string{"source": sc.Name, "key": b.ArtifactKey, "size": fmt.Sprint(b.SizeBytes)})
	e.applyRetention(ctx, sc, sourceID)
}

// BackupNow takes a base backup of the named source now.
func (e *Engine) BackupNow(ctx context.Context, name string) (store.BaseBackup, error) {
	r, ok := e.runner(name)
	if !ok {
		return store.BaseBackup{}, fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	w := r.getWorker()
	if w == nil {
		return store.BaseBackup{}, fmt.Errorf("source %s is not streaming (paused, or registration failed: see btfu status)", name)
	}
	return w.BackupNow(ctx)
}

// pausedBudget is the retained WAL a paused source's slot may hold: the
// smaller of pause_wal_budget and max_retained_wal.
func pausedBudget(sc *config.Source) int64 {
	return int64(min(sc.PauseWALBudget, sc.MaxRetainedWAL))
}

// watchPaused keeps a paused source's slot while it retains less WAL than
// the budget (warning at 75% of it); past it, the slot is dropped and the
// chain ended, so the source's disk is safe (DESIGN 6.3).
func (e *Engine) watchPaused(ctx context.Context, sc *config.Source, sourceID int64) {
	if err := e.meta.SetSourceState(ctx, sourceID, store.StatePaused, ""); err != nil {
		e.log.Warn("record state", "err", err)
	}
	budget := pausedBudget(sc)
	attrs := map[string]string{"source": sc.Name}
	e.Event(ctx, sourceID, slog.LevelInfo, kind.SourcePaused, fmt.Sprintf("source %s is paused; its slot is kept up to %s of retained WAL (the smaller of pause_wal_budget and max_retained_wal)", sc.Name, human.Bytes(budget)), attrs)
	t := time.NewTicker(pauseCheckEvery)
	defer t.Stop()
	for first, warned := true, false; ; first = false {
		dropped, retained, err := e.checkPausedSlot(ctx, sc, sourceID)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("could not check the paused slot", "source", sc.Name, "err", err)
		}
		if r, ok := e.runner(sc.Name); ok && err == nil {
			r.mu.Lock()
			r.pausedRetained = retained
			if dropped {
				r.pausedRetained = 0
			}
			r.mu.Unlock()
		}
		if first && err == nil && retained > 0 {
			e.Event(ctx, sourceID, slog.LevelInfo, kind.SlotWALAtStart, fmt.Sprintf("slot %s of paused source %s holds %s of WAL on the source (budget %s)", sc.Slot, sc.Name, human.Bytes(retained), human.Bytes(budget)), attrs)
		}
		switch {
		case !dropped && !warned && float64(retained) >= capture.WALWarnFraction*float64(budget):
			warned = true
			e.Event(ctx, sourceID, slog.LevelWarn, kind.SlotWALWarning, fmt.Sprintf("slot %s of paused source %s holds %s of WAL on the source, %.0f%% of its budget %s: past it btfu drops the slot (a gap, then a new base backup on resume)",
				sc.Slot, sc.Name, human.Bytes(retained), 100*float64(retained)/float64(budget), human.Bytes(budget)), attrs)
		case retained < budget/2:
			warned = false
		}
		if dropped {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkPausedSlot reads what a paused source's slot retains and, past
// the paused budget and with no backend streaming from it, drops it and
// ends the open chain. dropped is also true when there is no slot.
func (e *Engine) checkPausedSlot(ctx context.Context, sc *config.Source, sourceID int64) (dropped bool, retained int64, err error) {
	conn, err := sourcedb.Connect(ctx, sc)
	if err != nil {
		return false, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	u, err := sourcedb.ReadSlotWAL(ctx, conn, sc.Slot)
	if err != nil {
		return false, 0, err
	}
	if !u.Exists {
		return true, 0, nil // no slot to protect
	}
	budget := pausedBudget(sc)
	if u.Retained <= budget || u.ActivePID != 0 {
		return false, u.Retained, nil
	}
	if err := sourcedb.DropSlot(ctx, conn, sc.Slot); err != nil {
		return false, u.Retained, err
	}
	chains, err := e.meta.ListChains(ctx, sourceID)
	if err != nil {
		return true, u.Retained, err
	}
	for _, ch := range chains {
		if ch.EndedAt.IsZero() {
			if err := e.meta.EndChain(ctx, ch.ID, time.Now(), fmt.Sprintf("paused past its WAL budget (%s retained, budget %s): slot dropped", human.Bytes(u.Retained), human.Bytes(budget))); err != nil {
				return true, u.Retained, err
			}
		}
	}
	e.Event(ctx, sourceID, slog.LevelWarn, kind.SlotDropped, fmt.Sprintf("paused source %s retained %s of WAL, over its budget of %s: slot %s dropped; resuming takes a new base backup", sc.Name, human.Bytes(u.Retained), human.Bytes(budget), sc.Slot), map[string]string{"source": sc.Name})
	return true, u.Retained, nil
}
