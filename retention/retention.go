// Package retention prunes a source's old base backups, segments and
// sequence snapshots by its policy, never touching what a restore from a
// kept base backup needs.
//
// Kept base backups are the KeepBaseBackups newest complete ones, every
// complete one newer than KeepFor, and always the newest complete base of
// the open chain (the chain that reaches now is never left without one).
// In each chain, the oldest kept base's consistent LSN L is the horizon:
// segments ending at or before L hold only transactions committed before
// it and go; a segment straddling L stays. Chains with no kept base and
// that are not open lose their segments. Failed base backups older than a
// day go too; running ones are never touched. Schema snapshots are kept
// (the metadata store has no delete for them yet).
//
// Records are deleted before their artifacts: a leftover artifact only
// wastes space, while a record pointing at nothing would break a restore.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Policy is a source's retention settings.
type Policy struct {
	KeepBaseBackups int
	KeepFor         time.Duration
}

// Report counts what Apply deleted.
type Report struct {
	DeletedBaseBackups       int
	DeletedSegments          int
	DeletedSequenceSnapshots int64
	FreedBytes               int64
	ArtifactErrors           int
	Kept                     []int64 // IDs of kept base backups
}

// failedKeep is how long failed base backup records are kept for the log.
const failedKeep = 24 * time.Hour

// sequenceMargin keeps sequence snapshots a little older than the horizon.
const sequenceMargin = time.Hour

// Apply prunes one source. It is idempotent.
func Apply(ctx context.Context, meta store.Store, arts artifact.Store, sourceID int64, p Policy, now time.Time, log *slog.Logger) (Report, error) {
	var rep Report
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chains, err := meta.ListChains(ctx, sourceID)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	bases, err := meta.ListBaseBackups(ctx, sourceID)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	var complete []store.BaseBackup
	for _, b := range bases {
		if b.Status == store.BackupComplete {
			complete = append(complete, b)
		}
	}
	if len(complete) == 0 {
		return rep, nil
	}
	sort.Slice(complete, func(i, j int) bool { return complete[i].SnapshotTime.After(complete[j].SnapshotTime) })
	open := map[int64]bool{}
	for _, c := range chains {
		if c.EndedAt.IsZero() {
			open[c.ID] = true
		}
	}
	kept := map[int64]bool{}
	newestOpen := map[int64]bool{}
	for i, b := range complete {
		if i < p.KeepBaseBackups || !b.SnapshotTime.Before(now.Add(-p.KeepFor)) {
			kept[b.ID] = true
		}
		if open[b.ChainID] && !newestOpen[b.ChainID] {
			newestOpen[b.ChainID] = true
			kept[b.ID] = true
		}
	}
	// Horizon per chain: the oldest kept base's consistent LSN; the oldest
	// kept snapshot time overall.
	horizon := map[int64]pglogrepl.LSN{}
	var oldestKept time.Time
	for _, b := range complete {
		if !kept[b.ID] {
			continue
		}
		rep.Kept = append(rep.Kept, b.ID)
		if h, ok := horizon[b.ChainID]; !ok || b.ConsistentLSN < h {
			horizon[b.ChainID] = b.ConsistentLSN
		}
		if oldestKept.IsZero() || b.SnapshotTime.Before(oldestKept) {
			oldestKept = b.SnapshotTime
		}
	}

	for _, b := range bases {
		drop := (b.Status == store.BackupComplete && !kept[b.ID]) ||
			(b.Status == store.BackupFailed && b.StartedAt.Before(now.Add(-failedKeep)))
		if !drop {
			continue
		}
		if err := meta.DeleteBaseBackup(ctx, b.ID); err != nil {
			return rep, fmt.Errorf("retention: delete base backup %d: %w", b.ID, err)
		}
		rep.DeletedBaseBackups++
		rep.FreedBytes += b.SizeBytes
		log.Info("retention: base backup deleted", "source_id", sourceID, "id", b.ID, "status", b.Status, "key", b.ArtifactKey,
			"consistent_lsn", b.ConsistentLSN.String(), "snapshot_time", b.SnapshotTime, "size", b.SizeBytes)
		deleteArtifact(ctx, arts, b.ArtifactKey, log, &rep)
	}

	segs, err := meta.ListSegments(ctx, sourceID, 0)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	for _, s := range segs {
		h, hasBase := horizon[s.ChainID]
		var drop bool
		switch {
		case hasBase:
			drop = s.EndLSN <= h // every transaction in it committed before the horizon
		default:
			drop = !open[s.ChainID]
		}
		if !drop {
			continue
		}
		if err := meta.DeleteSegment(ctx, s.ID); err != nil {
			return rep, fmt.Errorf("retention: delete segment %d: %w", s.ID, err)
		}
		rep.DeletedSegments++
		rep.FreedBytes += s.StoredBytes
		log.Info("retention: segment deleted", "source_id", sourceID, "chain", s.ChainID, "key", s.ArtifactKey,
			"from_lsn", s.FirstCommitLSN.String(), "end_lsn", s.EndLSN.String(), "size", s.StoredBytes)
		deleteArtifact(ctx, arts, s.ArtifactKey, log, &rep)
	}

	// Sequence snapshots: a restore to T uses the first snapshot at or
	// after T, else the newest; keep everything from the newest snapshot
	// at or before the oldest kept base (less a margin) on.
	snaps, err := meta.ListSequenceSnapshots(ctx, sourceID)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	margin := oldestKept.Add(-sequenceMargin)
	var cut time.Time         // the newest snapshot at or before margin
	for _, s := range snaps { // ordered by TakenAt
		if s.TakenAt.After(margin) {
			break
		}
		cut = s.TakenAt
	}
	if cut.IsZero() {
		return rep, nil
	}
	n, err := meta.DeleteSequenceSnapshotsBefore(ctx, sourceID, cut)
	if err != nil {
		return rep, fmt.Errorf("retention: delete sequence snapshots: %w", err)
	}
	rep.DeletedSequenceSnapshots = n
	if n > 0 {
		log.Info("retention: sequence snapshots deleted", "source_id", sourceID, "count", n, "before", cut)
	}
	return rep, nil
}

func deleteArtifact(ctx context.Context, arts artifact.Store, key string, log *slog.Logger, rep *Report) {
	if key == "" {
		return
	}
	if err := arts.Delete(ctx, key); err != nil && !errors.Is(err, artifact.ErrNotFound) {
		rep.ArtifactErrors++
		log.Warn("retention: could not delete artifact; its record is gone, so it is only wasted space", "key", key, "err", err)
	}
}
