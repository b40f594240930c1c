package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/retention"
)

// RetentionPolicy is the retention policy of a configured source.
func RetentionPolicy(sc *config.Source) retention.Policy {
	loc, err := time.LoadLocation(sc.Timezone)
	if err != nil {
		loc = time.UTC // config.check refuses it; never reached
	}
	return retention.Policy{KeepBaseBackups: sc.KeepBaseBackups, KeepFor: sc.KeepFor.D(),
		KeepDaily: sc.KeepDaily, KeepWeekly: sc.KeepWeekly, KeepMonthly: sc.KeepMonthly, Location: loc}
}

// applyRetention prunes a source's old base backups, segments and
// snapshots by its policy; failures are logged, never fatal. A base the
// policy would delete but the chain that reaches now needs, and a plan
// its own check refused, are retention.refused events.
func (e *Engine) applyRetention(ctx context.Context, sc *config.Source, sourceID int64) {
	mu := e.housekeeping(sourceID)
	mu.Lock()
	defer mu.Unlock()
	rep, err := retention.Apply(ctx, e.meta, e.artifacts, sourceID, RetentionPolicy(sc), time.Now(), e.log.With("source", sc.Name))
	for _, why := range rep.Refused {
		e.Event(ctx, sourceID, slog.LevelWarn, kind.RetentionRefused, "retention of "+sc.Name+": "+why, map[string]string{"source": sc.Name})
	}
	switch {
	case errors.Is(err, retention.ErrRefused):
		e.Event(ctx, sourceID, slog.LevelError, kind.RetentionRefused, err.Error()+" (please report it: retention's own check found a plan that loses restorable data)", map[string]string{"source": sc.Name})
		return
	case err != nil:
		e.Event(ctx, sourceID, slog.LevelError, kind.RetentionFailed, err.Error(), map[string]string{"source": sc.Name})
		return
	}
	if rep.DeletedBaseBackups+rep.DeletedSegments > 0 {
		e.log.Info("retention applied", "source", sc.Name, "base_backups_deleted", rep.DeletedBaseBackups, "segments_deleted", rep.DeletedSegments, "freed_bytes", rep.FreedBytes)
	}
}
