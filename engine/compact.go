package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/btfu/btfu/compact"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/store"
)

// compactEvery is how often a source's old segments are looked at for
// compaction (a var for tests).
var compactEvery = 10 * time.Minute

// compactNow is the time compaction judges segments by (tests move it).
var compactNow = time.Now

// housekeeping serialises a source's retention and compaction: both
// rewrite its segment records, and each would only stumble over what the
// other just did.
func (e *Engine) housekeeping(sourceID int64) *sync.Mutex {
	m, _ := e.hk.LoadOrStore(sourceID, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// compactLoop compacts the source every compactEvery until ctx ends; it
// runs whether the source streams or is paused.
func (e *Engine) compactLoop(ctx context.Context, sc *config.Source, src store.Source) {
	if config.CompactOff(sc.CompactAfter) {
		return
	}
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.compactOnce(ctx, sc, src)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Once per outage; the log has every run.
			failing = true
			e.Event(ctx, src.ID, slog.LevelWarn, kind.CompactionFailed, "compaction of "+sc.Name+": "+err.Error()+" (segments stay as they are and restore; tried again every "+compactEvery.String()+")", map[string]string{"source": sc.Name})
		case err == nil && failing:
			failing = false
			e.Event(ctx, src.ID, slog.LevelInfo, kind.CompactionRecovered, "compaction of "+sc.Name+" works again", map[string]string{"source": sc.Name})
		}
	}
}

// compactOnce merges the source's ripe segments and sweeps what they
// replaced once the grace is over.
func (e *Engine) compactOnce(ctx context.Context, sc *config.Source, src store.Source) error {
	mu := e.housekeeping(src.ID)
	mu.Lock()
	defer mu.Unlock()
	log := e.log.With("source", sc.Name)
	rep, err := compact.Apply(ctx, e.meta, e.artifacts, src, compact.Options{After: sc.CompactAfterD(), SpoolDir: e.spoolDir()}, compactNow(), log)
	if err != nil {
		log.Warn("compaction failed", "err", err)
		return err
	}
	if rep.Merged+rep.Swept > 0 {
		log.Info("compaction", "merged_objects", rep.Merged, "segments_replaced", rep.Replaced, "objects_deleted", rep.Swept, "freed_bytes", rep.Freed)
	}
	return nil
}
