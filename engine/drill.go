package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/drill"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/store"
)

// drillCoverageWait bounds a drill's wait for the stream (tests shorten
// it).
var drillCoverageWait = drill.DefaultCoverageWait

// drills tracks the running drill and the drill schedule of each source.
type drills struct {
	mu      sync.Mutex
	running map[string]bool
	jobs    map[string]gocron.Job
}

// setJob records (nil: forgets) the source's scheduled drill job.
func (d *drills) setJob(name string, job gocron.Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.jobs == nil {
		d.jobs = map[string]gocron.Job{}
	}
	if job == nil {
		delete(d.jobs, name)
	} else {
		d.jobs[name] = job
	}
}

// nextOf is the source's next scheduled drill, zero when none.
func (d *drills) nextOf(name string) time.Time {
	d.mu.Lock()
	job := d.jobs[name]
	d.mu.Unlock()
	if job == nil {
		return time.Time{}
	}
	next, err := job.NextRun()
	if err != nil {
		return time.Time{}
	}
	return next
}

// ErrDrillRunning: a drill of the source is already running.
var ErrDrillRunning = errors.New("a restore drill of this source is already running")

// Drill runs a restore drill of the named source now (trigger "manual"
// or "schedule"), records it and publishes drill.started, then
// drill.passed or drill.failed (an alert through the notifications). The
// stream must run meanwhile: the drill waits until it covers the drill's
// LSN.
func (e *Engine) Drill(ctx context.Context, name, trigger string) (store.Drill, error) {
	r, ok := e.runner(name)
	if !ok {
		return store.Drill{}, fmt.Errorf("no source %q in %s", name, e.Config().Path)
	}
	sc := r.cfg
	if sc.DrillTarget == "" {
		return store.Drill{}, fmt.Errorf("source %s has no drill_target: set drill_target in %s to a server where drills may create a scratch database (never the source's)", name, e.Config().Path)
	}
	rec, err := e.meta.GetSource(ctx, name)
	if err != nil {
		return store.Drill{}, fmt.Errorf("source %s: %w", name, err)
	}
	if sc.Paused || rec.Paused {
		return store.Drill{}, fmt.Errorf("source %s is paused: a drill needs the stream to reach its LSN; resume it first ('btfu resume --source %s')", name, name)
	}
	e.drills.mu.Lock()
	if e.drills.running == nil {
		e.drills.running = map[string]bool{}
	}
	if e.drills.running[name] {
		e.drills.mu.Unlock()
		return store.Drill{}, fmt.Errorf("%s: %w; see 'btfu status'", name, ErrDrillRunning)
	}
	e.drills.running[name] = true
	e.drills.mu.Unlock()
	defer func() {
		e.drills.mu.Lock()
		delete(e.drills.running, name)
		e.drills.mu.Unlock()
	}()

	attrs := map[string]string{"source": name, "trigger": trigger}
	e.Event(ctx, rec.ID, levelInfo, kind.DrillStarted, fmt.Sprintf("restore drill of %s started (%s)", name, trigger), attrs)
	d, err := drill.Run(ctx, drill.Options{Source: sc, Record: rec, Meta: e.meta, Artifacts: e.artifacts, Trigger: trigger,
		CoverageWait: drillCoverageWait, TempDir: e.spoolDir(), Log: e.log})
	attrs = map[string]string{"source": name, "trigger": trigger, "lsn": d.LSN.String(), "rto": d.RTO().Round(time.Millisecond).String()}
	if err != nil {
		var de *drill.Error
		if errors.As(err, &de) {
			attrs["category"] = de.Category
		}
		if d.Status == store.DrillInterrupted {
			// Not an alert: a drill cut short by a shutdown proves nothing.
			e.Event(context.WithoutCancel(ctx), rec.ID, levelWarn, kind.DrillInterrupted, fmt.Sprintf("restore drill of %s interrupted: %v", name, err), attrs)
			return d, err
		}
		e.Event(context.WithoutCancel(ctx), rec.ID, levelError, kind.DrillFailed, fmt.Sprintf("restore drill of %s failed: %v", name, err), attrs)
		return d, err
	}
	e.Event(ctx, rec.ID, levelInfo, kind.DrillPassed, fmt.Sprintf("restore drill of %s passed: %s", name, summarizeDrill(d)), attrs)
	return d, nil
}

// summarizeDrill is one line about a finished drill.
func summarizeDrill(d store.Drill) string {
	equal, left := 0, 0
	for _, t := range d.Tables {
		switch t.Verdict {
		case store.VerdictEqual:
			equal++
		case store.VerdictLeftOut:
			left++
		}
	}
	s := fmt.Sprintf("%d table(s) restored exactly at %s, RTO %s (%s read, %s restored)", equal, d.LSN, d.RTO().Round(time.Second),
		human.Bytes(d.ArtifactBytes), human.Bytes(d.RestoredBytes))
	if left > 0 {
		s += fmt.Sprintf(", %d LEFT OUT (not backed up)", left)
	}
	return s
}

// scheduleDrills starts the source's drill cron job in its time zone,
// while the source streams.
func (e *Engine) scheduleDrills(ctx context.Context, sc *config.Source) (stop func(), err error) {
	if config.DrillOff(sc.DrillSchedule) {
		return func() {}, nil
	}
	job, stopJob, err := cronJob(sc, "drill_schedule", sc.DrillSchedule, func() {
		// Failures are events (drill.failed) already.
		_, _ = e.Drill(ctx, sc.Name, "schedule")
	})
	if err != nil {
		return nil, err
	}
	e.drills.setJob(sc.Name, job)
	return func() {
		e.drills.setJob(sc.Name, nil)
		stopJob()
	}, nil
}

// startDrills runs the source's drill schedule until the returned
// function is called; a schedule that cannot start is an event.
func (e *Engine) startDrills(ctx context.Context, sc *config.Source, sourceID int64) (stop func()) {
	stop, err := e.scheduleDrills(ctx, sc)
	if err != nil {
		e.Event(ctx, sourceID, slog.LevelError, kind.ScheduleFailed, err.Error(), map[string]string{"source": sc.Name})
		return func() {}
	}
	return stop
}

// DrillInfo is a source's last drill, as status shows it.
type DrillInfo struct {
	StartedAt     time.Time          `json:"started_at"`
	FinishedAt    *time.Time         `json:"finished_at,omitempty"`
	Status        string             `json:"status"` // running, passed, failed
	Trigger       string             `json:"trigger"`
	LSN           string             `json:"lsn"`
	BaseKey       string             `json:"base_backup,omitempty"`
	RTOSeconds    float64            `json:"rto_seconds"`
	PhaseSeconds  map[string]float64 `json:"phase_seconds"`
	Equal         int                `json:"tables_equal"`
	Differ        int                `json:"tables_differ"`
	LeftOut       int                `json:"tables_left_out"`
	Category      string             `json:"category,omitempty"`
	Error         string             `json:"error,omitempty"`
	Hint          string             `json:"hint,omitempty"`
	SourceBytes   int64              `json:"source_bytes"`
	RestoredBytes int64              `json:"restored_bytes"`
	ArtifactBytes int64              `json:"artifact_bytes"`
	Tables        []store.DrillTable `json:"tables"`
}

// NewDrillInfo describes a stored drill.
func NewDrillInfo(d store.Drill) *DrillInfo {
	info := &DrillInfo{StartedAt: d.StartedAt, Status: d.Status, Trigger: d.Trigger, LSN: d.LSN.String(), BaseKey: d.BaseKey,
		RTOSeconds: d.RTO().Seconds(), PhaseSeconds: map[string]float64{}, Category: d.Category, Error: d.Error, Hint: d.Hint,
		SourceBytes: d.SourceBytes, RestoredBytes: d.RestoredBytes, ArtifactBytes: d.ArtifactBytes, Tables: d.Tables}
	if !d.FinishedAt.IsZero() {
		t := d.FinishedAt
		info.FinishedAt = &t
	}
	if info.Tables == nil {
		info.Tables = []store.DrillTable{}
	}
	for _, p := range d.Phases {
		info.PhaseSeconds[p.Name] = p.Took.Seconds()
	}
	for _, t := range d.Tables {
		switch t.Verdict {
		case store.VerdictEqual:
			info.Equal++
		case store.VerdictLeftOut:
			info.LeftOut++
		default:
			info.Differ++
		}
	}
	return info
}

// lastDrill returns the source's newest drill that was not interrupted
// (an interrupted one proves nothing and must not hide the result
// before it), if any.
func lastDrill(ctx context.Context, meta store.Store, sourceID int64) (*DrillInfo, error) {
	ds, err := meta.ListDrills(ctx, sourceID, 20)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.Status != store.DrillInterrupted {
			return NewDrillInfo(d), nil
		}
	}
	return nil, nil
}

// nextDrill is the source's next scheduled drill, if the engine runs it.
func (e *Engine) nextDrill(name string) *time.Time {
	if t := e.drills.nextOf(name); !t.IsZero() {
		return &t
	}
	return nil
}

// Line says in one line how the drill went, for the TUI and `btfu
// status`: "passed 2h ago, RTO 4m12s".
func (d *DrillInfo) Line(now time.Time) string {
	rto := time.Duration(d.RTOSeconds * float64(time.Second)).Round(time.Second)
	switch {
	case d.Status == store.DrillRunning || d.FinishedAt == nil:
		return "running, started " + ago(now.Sub(d.StartedAt))
	case d.Status == store.DrillPassed:
		return fmt.Sprintf("passed %s, RTO %s", ago(now.Sub(*d.FinishedAt)), rto)
	case d.Status == store.DrillInterrupted:
		return "interrupted " + ago(now.Sub(*d.FinishedAt))
	}
	s := fmt.Sprintf("FAILED %s (%s)", ago(now.Sub(*d.FinishedAt)), d.Category)
	if d.Differ > 0 {
		s += fmt.Sprintf(": %d table(s) differ", d.Differ)
	}
	return s
}

// ago is a coarse age in whole units: "45s ago", "12m ago", "5h ago",
// "3d ago".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(max(d, 0)/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}
