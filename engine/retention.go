package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/retention"
)

// applyRetention prunes a source's old base backups, segments and
// snapshots by its policy; failures are logged, never fatal.
func (e *Engine) applyRetention(ctx context.Context, sc *config.Source, sourceID int64) {
	rep, err := retention.Apply(ctx, e.meta, e.artifacts, sourceID, retention.Policy{KeepBaseBackups: sc.KeepBaseBackups, KeepFor: sc.KeepFor.D()}, time.Now(), e.log.With("source", sc.Name))
	if err != nil {
		e.Event(ctx, sourceID, slog.LevelError, "retention.failed", err.Error(), map[string]string{"source": sc.Name})
		return
	}
	if rep.DeletedBaseBackups+rep.DeletedSegments > 0 {
		e.log.Info("retention applied", "source", sc.Name, "base_backups_deleted", rep.DeletedBaseBackups, "segments_deleted", rep.DeletedSegments, "freed_bytes", rep.FreedBytes)
	}
}
