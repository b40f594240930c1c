// Package retention prunes a source's old base backups, segments and
// sequence snapshots by its policy, never touching what a restore from a
// kept base backup needs (../shared/DESIGN.md: chain, coverage, 4.6).
//
// # What is kept
//
// Only complete base backups can be restored from. Kept are:
//   - the KeepBaseBackups newest complete bases (by SnapshotTime) that the
//     stream has reached, i.e. whose consistent LSN is at or below their
//     chain's durable cursor. A base taken from a second slot can finish
//     before the main stream catches up with its C2 (btfu catching up after
//     a restart, a long transaction); until then coverage.Compute gives it
//     no range, so counting it would let retention delete the last base
//     that is restorable now. Such a base is kept while its chain is open
//     and does not count; in an ended chain it never becomes restorable and
//     is pruned like any other base outside the policy;
//   - every complete base with SnapshotTime >= now-KeepFor;
//   - in every open chain (EndedAt zero), its newest reached complete base,
//     whatever the policy says. With KeepBaseBackups >= 1 the newest base
//     overall is normally that one already; the rule matters when
//     SnapshotTime order and chain order disagree (a clock stepped back, an
//     ended chain recorded after the open one): the chain that reaches now
//     must keep a base to replay from, or restores to "now" become
//     impossible while its segments are still being written.
//
// With no complete base at all, nothing is deleted.
//
// # What goes
//
// In each chain holding a kept base, the oldest kept base's consistent LSN
// L is that chain's horizon: a segment with EndLSN <= L holds only
// transactions committed before L (commit LSN < C, DESIGN 1.3) and goes; a
// segment straddling L stays. For the chain of the oldest kept base
// overall this is the global horizon; other chains holding kept bases are
// pruned the same way. A running base backup is never touched and also
// protects its chain's segments from its consistent LSN on. Chains that are
// ended and hold no kept or running base lose all their segments and their
// complete bases (the chain records themselves stay: the store cannot
// delete chains). The open chain keeps its segments even without a base:
// its first base backup may still be running. Failed base backups go once
// they are older than 24 hours or than the oldest kept base.
//
// Sequence snapshots: a restore to T uses the first snapshot taken at or
// after T, else the newest (DESIGN 4.6). Targets start at the oldest kept
// base's SnapshotTime T0, so older snapshots are needed only if clocks
// disagree; retention keeps the newest snapshot taken at or before T0 less
// SequenceMargin, and everything after it. That keeps the newest snapshot
// at or before T0 and every snapshot of the last margin before T0, and the
// newest snapshot overall is never deleted.
//
// Schema snapshots are left alone: store.Store has no delete for them
// (Report.DeletedSchemaSnapshots is always 0). They are small.
//
// # Safety
//
// Records are deleted before their artifacts: a leftover artifact only
// wastes space, while a record pointing at nothing would break a restore.
// Artifact deletion failures are logged and counted, not fatal. Segments
// are deleted oldest first, so an interrupted run never leaves a hole in a
// chain. Records that appear while Apply runs (a new chain, base or
// segment) are not in its lists and are never deleted. Apply is idempotent
// and cheap enough to run after every base backup.
package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Policy is a source's retention settings (config.Source KeepBaseBackups
// and KeepFor).
type Policy struct {
	// KeepBaseBackups is how many of the newest restorable complete base
	// backups to keep; values below 1 count as 1.
	KeepBaseBackups int
	// KeepFor keeps every complete base backup whose snapshot is younger;
	// zero or negative keeps none by age.
	KeepFor time.Duration
}

// Report says what Apply deleted and kept.
type Report struct {
	DeletedBaseBackups int
	DeletedSegments    int
	// DeletedSchemaSnapshots is always 0: the metadata store cannot delete
	// schema snapshots yet.
	DeletedSchemaSnapshots   int
	DeletedSequenceSnapshots int64
	// FreedBytes is the recorded size of the artifacts deleted.
	FreedBytes int64
	// ArtifactErrors counts artifacts that could not be deleted after
	// their record was (wasted space, logged with their key).
	ArtifactErrors int
	// Kept holds the IDs of the kept complete base backups, ascending.
	Kept []int64
}

const (
	// FailedKeep is how long a failed base backup's record stays for the
	// log and status (unless it is older than the oldest kept base).
	FailedKeep = 24 * time.Hour
	// SequenceMargin is how far before the oldest kept base sequence
	// snapshots are kept whatever else holds, against clock skew.
	SequenceMargin = time.Hour
)

// Apply prunes the source's metadata and artifacts by policy p, as of now.
// It returns the first metadata error; artifact errors only count in the
// report. A nil log discards.
func Apply(ctx context.Context, meta store.Store, arts artifact.Store, sourceID int64, p Policy, now time.Time, log *slog.Logger) (Report, error) {
	var rep Report
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("source_id", sourceID)
	fail := func(err error) (Report, error) {
		return rep, fmt.Errorf("retention of source %d: %w", sourceID, err)
	}
	chains, err := meta.ListChains(ctx, sourceID)
	if err != nil {
		return fail(err)
	}
	bases, err := meta.ListBaseBackups(ctx, sourceID)
	if err != nil {
		return fail(err)
	}
	pl := decide(chains, bases, p, now)
	if len(pl.kept) == 0 {
		return rep, nil // nothing restorable to prune against
	}
	for id := range pl.kept {
		rep.Kept = append(rep.Kept, id)
	}
	slices.Sort(rep.Kept)

	for _, b := range bases {
		why := pl.dropBase(b, now)
		if why == "" {
			continue
		}
		if err := meta.DeleteBaseBackup(ctx, b.ID); err != nil {
			return fail(fmt.Errorf("delete base backup %d: %w", b.ID, err))
		}
		rep.DeletedBaseBackups++
		log.Info("retention: deleted", "kind", "base_backup", "id", b.ID, "chain_id", b.ChainID, "status", b.Status,
			"key", b.ArtifactKey, "from_lsn", b.ConsistentLSN.String(), "to_lsn", b.ConsistentLSN.String(),
			"snapshot_time", b.SnapshotTime, "size", b.SizeBytes, "reason", why)
		rep.deleteArtifact(ctx, arts, log, b.ArtifactKey, b.SizeBytes)
	}

	segs, err := meta.ListSegments(ctx, sourceID, 0) // by chain, then LSN: oldest first
	if err != nil {
		return fail(err)
	}
	for _, s := range segs {
		why := pl.dropSegment(s)
		if why == "" {
			continue
		}
		if err := meta.DeleteSegment(ctx, s.ID); err != nil {
			return fail(fmt.Errorf("delete segment %d: %w", s.ID, err))
		}
		rep.DeletedSegments++
		log.Info("retention: deleted", "kind", "segment", "id", s.ID, "chain_id", s.ChainID, "key", s.ArtifactKey,
			"from_lsn", s.PrevEndLSN.String(), "to_lsn", s.EndLSN.String(), "last_commit_at", s.LastCommitAt,
			"size", s.StoredBytes, "reason", why)
		rep.deleteArtifact(ctx, arts, log, s.ArtifactKey, s.StoredBytes)
	}

	snaps, err := meta.ListSequenceSnapshots(ctx, sourceID)
	if err != nil {
		return fail(err)
	}
	if cut := sequenceCut(snaps, pl.horizon); !cut.IsZero() {
		n, err := meta.DeleteSequenceSnapshotsBefore(ctx, sourceID, cut)
		if err != nil {
			return fail(err)
		}
		rep.DeletedSequenceSnapshots = n
		if n > 0 {
			log.Info("retention: deleted", "kind", "sequence_snapshots", "count", n, "taken_before", cut,
				"reason", "older than the newest snapshot at or before the oldest kept base less the margin")
		}
	}
	return rep, nil
}

// plan is what Apply decided from the chains and base backups.
type plan struct {
	chains  map[int64]store.Chain
	kept    map[int64]string        // kept base ID -> why
	protect map[int64]pglogrepl.LSN // chain ID -> segments ending after this LSN stay
	horizon time.Time               // SnapshotTime of the oldest kept base
}

// decide chooses the kept base backups and each chain's horizon.
func decide(chains []store.Chain, bases []store.BaseBackup, p Policy, now time.Time) plan {
	pl := plan{chains: map[int64]store.Chain{}, kept: map[int64]string{}, protect: map[int64]pglogrepl.LSN{}}
	for _, c := range chains {
		pl.chains[c.ID] = c
	}
	var complete []store.BaseBackup
	for _, b := range bases {
		switch b.Status {
		case store.BackupComplete:
			complete = append(complete, b)
		case store.BackupRunning:
			if b.ChainID != 0 {
				pl.protectFrom(b.ChainID, b.ConsistentLSN)
			}
		}
	}
	slices.SortFunc(complete, func(a, b store.BaseBackup) int { // newest first
		return cmp.Or(b.SnapshotTime.Compare(a.SnapshotTime), cmp.Compare(b.ConsistentLSN, a.ConsistentLSN), cmp.Compare(b.ID, a.ID))
	})
	n := max(p.KeepBaseBackups, 1)
	openHasNewest := map[int64]bool{}
	for _, b := range complete {
		ch, known := pl.chains[b.ChainID]
		open := known && ch.EndedAt.IsZero()
		reached := known && b.ConsistentLSN <= ch.CursorLSN
		var why string
		switch {
		case reached && n > 0:
			why = "among the newest"
			n--
		case p.KeepFor > 0 && !b.SnapshotTime.Before(now.Add(-p.KeepFor)):
			why = "within keep_for"
		case open && !reached:
			why = "not yet reached by the stream"
		case open && reached && !openHasNewest[ch.ID]:
			why = "newest of the open chain"
		}
		if open && reached {
			openHasNewest[ch.ID] = true
		}
		if why == "" {
			continue
		}
		pl.kept[b.ID] = why
		pl.protectFrom(b.ChainID, b.ConsistentLSN)
		if pl.horizon.IsZero() || b.SnapshotTime.Before(pl.horizon) {
			pl.horizon = b.SnapshotTime
		}
	}
	return pl
}

// protectFrom keeps the chain's segments that end after lsn.
func (pl plan) protectFrom(chainID int64, lsn pglogrepl.LSN) {
	if l, ok := pl.protect[chainID]; !ok || lsn < l {
		pl.protect[chainID] = lsn
	}
}

// dropBase says why base backup b goes, or "" when it stays.
func (pl plan) dropBase(b store.BaseBackup, now time.Time) string {
	switch b.Status {
	case store.BackupComplete:
		if _, ok := pl.kept[b.ID]; !ok {
			return "not kept by the policy"
		}
	case store.BackupFailed:
		at := latest(b.StartedAt, b.FinishedAt, b.SnapshotTime) // its last sign of life
		switch {
		case at.Before(now.Add(-FailedKeep)):
			return "failed more than a day ago"
		case at.Before(pl.horizon):
			return "failed before the oldest kept base"
		}
	}
	return ""
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	return slices.MaxFunc(ts, time.Time.Compare)
}

// dropSegment says why segment s goes, or "" when it stays.
func (pl plan) dropSegment(s store.Segment) string {
	ch, known := pl.chains[s.ChainID]
	if !known {
		return "" // its chain began after Apply listed chains
	}
	if l, ok := pl.protect[s.ChainID]; ok {
		if s.EndLSN <= l {
			return "ends at or before the oldest kept base of its chain"
		}
		return ""
	}
	if ch.EndedAt.IsZero() {
		return "" // the open chain: its first base may be on the way
	}
	return "its chain ended and holds no kept base"
}

// sequenceCut returns the time before which sequence snapshots may be
// deleted: the TakenAt of the newest snapshot taken at or before the
// horizon less SequenceMargin; zero when there is none. snaps are ordered
// by TakenAt.
func sequenceCut(snaps []store.SequenceSnapshot, horizon time.Time) time.Time {
	limit := horizon.Add(-SequenceMargin)
	var cut time.Time
	for _, s := range snaps {
		if s.TakenAt.After(limit) {
			break
		}
		cut = s.TakenAt
	}
	return cut
}

// deleteArtifact deletes an artifact whose record is already gone; a
// failure is logged and counted, a missing object is fine.
func (rep *Report) deleteArtifact(ctx context.Context, arts artifact.Store, log *slog.Logger, key string, size int64) {
	if key == "" {
		return
	}
	err := arts.Delete(ctx, key)
	switch {
	case err == nil:
		rep.FreedBytes += size
	case errors.Is(err, artifact.ErrNotFound):
	default:
		rep.ArtifactErrors++
		log.Warn("retention: could not delete an artifact whose record is gone; it only wastes space", "key", key, "err", err)
	}
}
