// Package retention decides, by a source's policy (keep_base_backups,
// keep_for, keep_daily, keep_weekly, keep_monthly), which of its base
// backups, segments and sequence snapshots stay and which go, and why.
// Apply deletes what goes; MakePlan only decides (btfu retention
// --dry-run).
//
// The invariant: retention never touches what a restore from a kept base
// backup needs (../shared/DESIGN.md: chain, coverage, 4.6). The plan is
// simulated first, and one that would leave a kept base, the keep_for
// window's start or the open chain's cursor unrestorable deletes nothing.
//
// What is kept is on decide; what goes on segmentVerdict, dropBase and
// sequenceCut; the safety check on Plan.check; the order of deletion on
// Apply.
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

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Policy is a source's retention settings (config.Source keep_* keys and
// its time zone).
type Policy struct {
	// KeepBaseBackups is how many of the newest restorable complete base
	// backups to keep; values below 1 count as 1.
	KeepBaseBackups int
	// KeepFor keeps every complete base backup whose snapshot is younger;
	// zero or negative keeps none by age.
	KeepFor time.Duration
	// KeepDaily, KeepWeekly and KeepMonthly keep the newest restorable
	// base backup of each of that many most recent days, ISO weeks and
	// months (in Location) that have one; 0 keeps none by that rule.
	KeepDaily, KeepWeekly, KeepMonthly int
	// Location is the time zone calendar periods are read in; nil is UTC.
	Location *time.Location
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
	// Refused says what the policy alone would have deleted but retention
	// kept: the newest base of the chain that reaches now.
	Refused []string
}

const (
	// FailedKeep is how long a failed base backup's record stays for the
	// log and status (unless it is older than the oldest kept base).
	FailedKeep = 24 * time.Hour
	// SequenceMargin is how far before the oldest kept base sequence
	// snapshots are kept whatever else holds, against clock skew.
	SequenceMargin = time.Hour
)

// ErrRefused means the plan failed its last check (a kept base or now
// would stop being restorable); nothing was deleted. It is a bug if it
// ever happens.
var ErrRefused = errors.New("retention refused")

// Apply prunes the source's metadata and artifacts by policy p, as of now.
// It returns the first metadata error; artifact errors only count in the
// report. A nil log discards.
//
// It deletes what MakePlan decides, and nothing when no base is kept or
// the plan fails its check (ErrRefused). Records are deleted before their
// artifacts: a leftover artifact only wastes space, while a record
// pointing at nothing would break a restore. Artifact deletion failures
// are logged and counted, not fatal. Segments are deleted oldest first;
// one that compaction replaced since the plan was made is skipped (the
// merged segment is judged next time, and compaction's sweep deletes the
// replaced object). Records that appear while Apply runs (a new chain,
// base or segment) are not in its lists and are never deleted. Schema
// snapshots are left alone: store.Store has no delete for them
// (Report.DeletedSchemaSnapshots is always 0). They are small. Apply is
// idempotent and cheap enough to run after every base backup.
func Apply(ctx context.Context, meta store.Store, arts artifact.Store, sourceID int64, p Policy, now time.Time, log *slog.Logger) (Report, error) {
	var rep Report
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("source_id", sourceID)
	fail := func(err error) (Report, error) {
		return rep, fmt.Errorf("retention of source %d: %w", sourceID, err)
	}
	pl, err := MakePlan(ctx, meta, sourceID, p, now)
	if err != nil {
		return fail(err)
	}
	rep.Refused = pl.Refused
	if len(pl.kept) == 0 {
		return rep, nil // nothing restorable to prune against
	}
	for id := range pl.kept {
		rep.Kept = append(rep.Kept, id)
	}
	slices.Sort(rep.Kept)
	if pl.Problem != "" {
		return fail(fmt.Errorf("%w: %s; nothing deleted", ErrRefused, pl.Problem))
	}

	for _, v := range pl.Bases {
		b := v.Base
		if v.Drop == "" {
			continue
		}
		if err := meta.DeleteBaseBackup(ctx, b.ID); err != nil {
			return fail(fmt.Errorf("delete base backup %d: %w", b.ID, err))
		}
		rep.DeletedBaseBackups++
		log.Info("retention: deleted", "kind", "base_backup", "id", b.ID, "chain_id", b.ChainID, "status", b.Status,
			"key", b.ArtifactKey, "from_lsn", b.ConsistentLSN.String(), "to_lsn", b.ConsistentLSN.String(),
			"snapshot_time", b.SnapshotTime, "size", b.SizeBytes, "reason", v.Drop)
		rep.deleteArtifact(ctx, arts, log, b.ArtifactKey, b.SizeBytes)
	}

	for _, v := range pl.Segments { // by chain, then LSN: oldest first
		s := v.Segment
		if v.Drop == "" {
			continue
		}
		if err := meta.DeleteSegment(ctx, s.ID); errors.Is(err, store.ErrNotFound) {
			// Compaction replaced it since the plan was made: the merged
			// segment holds its transactions and is judged next time.
			log.Info("retention: segment already replaced by compaction", "id", s.ID, "key", s.ArtifactKey)
			continue
		} else if err != nil {
			return fail(fmt.Errorf("delete segment %d: %w", s.ID, err))
		}
		rep.DeletedSegments++
		log.Info("retention: deleted", "kind", "segment", "id", s.ID, "chain_id", s.ChainID, "key", s.ArtifactKey,
			"from_lsn", s.PrevEndLSN.String(), "to_lsn", s.EndLSN.String(), "last_commit_at", s.LastCommitAt,
			"size", s.StoredBytes, "reason", v.Drop)
		rep.deleteArtifact(ctx, arts, log, s.ArtifactKey, s.StoredBytes)
	}

	if cut := pl.SequenceCut; !cut.IsZero() {
		n, err := meta.DeleteSequenceSnapshotsBefore(ctx, sourceID, cut)
		if err != nil {
			return fail(err)
		}
		rep.DeletedSequenceSnapshots = n
		if n > 0 {
			log.Info("retention: deleted", "kind", "sequence_snapshots", "count", n, "taken_before", cut,
				"reason", "older than the newest snapshot at or before the oldest base kept for point-in-time recovery, less the margin")
		}
	}
	return rep, nil
}

// BaseVerdict is what retention does with one base backup.
type BaseVerdict struct {
	Base store.BaseBackup
	// Keep lists why it stays (the rules that keep it); Drop says why it
	// goes. Exactly one of them is set.
	Keep []string
	Drop string
	// Point: kept only as a restore point (a calendar rule), with the
	// segment holding its consistent point, not the segments after it.
	Point bool
}

// SegmentVerdict is what retention does with one segment.
type SegmentVerdict struct {
	Segment store.Segment
	Keep    string // why it stays
	Drop    string // why it goes
}

// Plan is what retention decided for one source: a verdict for every
// base backup and segment, what goes of the sequence snapshots, and what
// the safety rules kept against the policy.
type Plan struct {
	Bases    []BaseVerdict    // as listed: by ID
	Segments []SegmentVerdict // by chain, then LSN
	// SequenceCut: sequence snapshots taken before it go (zero: none).
	SequenceCut time.Time
	// Horizon is the snapshot time of the oldest base kept for
	// point-in-time recovery (with every segment after it).
	Horizon time.Time
	// Refused says what the policy alone would have deleted but the
	// safety rules keep.
	Refused []string
	// Problem, when set, is why the plan must not run: deleting as
	// planned would leave a kept base, the keep_for window's start or now
	// unrestorable. Apply then deletes nothing.
	Problem string

	chains   map[int64]store.Chain
	kept     map[int64][]string      // kept complete base ID -> why
	full     map[int64]bool          // kept base IDs whose later segments stay
	protect  map[int64]pglogrepl.LSN // chain ID -> segments ending after this LSN stay
	pointSeg map[int64]string        // segment ID -> why it stays (a restore point's)
}

// MakePlan reads the source's records and decides, as Apply would, what
// goes and why; it deletes nothing (btfu retention --dry-run). With no
// complete base at all, nothing is deleted.
func MakePlan(ctx context.Context, meta store.Store, sourceID int64, p Policy, now time.Time) (Plan, error) {
	chains, err := meta.ListChains(ctx, sourceID)
	if err != nil {
		return Plan{}, err
	}
	bases, err := meta.ListBaseBackups(ctx, sourceID)
	if err != nil {
		return Plan{}, err
	}
	segs, err := meta.ListSegments(ctx, sourceID, 0) // by chain, then LSN: oldest first
	if err != nil {
		return Plan{}, err
	}
	pl := decide(chains, bases, segs, p, now)
	if len(pl.kept) == 0 {
		// Nothing restorable to prune against: everything stays.
		for i := range pl.Bases {
			pl.Bases[i].Drop, pl.Bases[i].Keep = "", []string{"no complete base backup is restorable: nothing is deleted"}
		}
		for i := range pl.Segments {
			pl.Segments[i].Drop, pl.Segments[i].Keep = "", "no complete base backup is restorable: nothing is deleted"
		}
		pl.SequenceCut = time.Time{}
		return pl, nil
	}
	snaps, err := meta.ListSequenceSnapshots(ctx, sourceID)
	if err != nil {
		return pl, err
	}
	pl.SequenceCut = sequenceCut(snaps, pl.Horizon)
	return pl, nil
}

// decide chooses the kept base backups and each chain's horizon, gives
// every record its verdict and checks the result.
//
// Only complete base backups can be restored from. A base is kept either
// for point-in-time recovery (with every segment of its chain after it) or
// as a restore point (with only the segment holding its consistent point,
// so coverage still reaches it). Kept for point-in-time recovery are:
//   - the KeepBaseBackups newest complete bases (by SnapshotTime) that the
//     stream has reached, i.e. whose consistent LSN is at or below their
//     chain's durable cursor. A base taken from a second slot can finish
//     before the main stream catches up with its C2 (btfu catching up after
//     a restart, a long transaction); until then coverage.Compute gives it
//     no range, so counting it would let retention delete the last base
//     that is restorable now. Such a base is kept while its chain is open
//     and does not count; in an ended chain it never becomes restorable and
//     is pruned like any other base outside the policy. Counting the newest
//     whatever their age makes this the minimum that survives when new
//     base backups keep failing;
//   - every complete base with SnapshotTime >= now-KeepFor, and the newest
//     base before that window's start whose range reaches the start: the
//     window promises every instant in it, its first one included;
//   - in every open chain (EndedAt zero), its newest reached complete base,
//     whatever the policy says. With KeepBaseBackups >= 1 the newest base
//     overall is normally that one already; the rule matters when
//     SnapshotTime order and chain order disagree (a clock stepped back, an
//     ended chain recorded after the open one): the chain that reaches now
//     must keep a base to replay from, or restores to "now" become
//     impossible while its segments are still being written. When no other
//     rule keeps it, the plan says so in Refused (an event for the user).
//
// Kept as restore points (calendar rules, as restic's --keep-daily): for
// KeepDaily, KeepWeekly and KeepMonthly, the newest restorable base of
// each of that many most recent days, ISO weeks and months that have one,
// read in the source's time zone. Periods without a base do not count, so
// failing backups never make the old ones expire.
//
// A running base backup is never touched and also protects its chain's
// segments from its consistent LSN on.
func decide(chains []store.Chain, bases []store.BaseBackup, segs []store.Segment, p Policy, now time.Time) Plan {
	pl := Plan{chains: map[int64]store.Chain{}, kept: map[int64][]string{}, full: map[int64]bool{},
		protect: map[int64]pglogrepl.LSN{}, pointSeg: map[int64]string{}}
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
	before := coverage.Compute(slices.Clone(chains), complete, segs)
	reach := func(b store.BaseBackup) (coverage.Range, bool) { return rangeOf(before, b) }

	keep := func(b store.BaseBackup, why string, full bool) {
		pl.kept[b.ID] = append(pl.kept[b.ID], why)
		if full {
			pl.full[b.ID] = true
		}
	}
	n := max(p.KeepBaseBackups, 1)
	openHasNewest := map[int64]bool{}
	var windowStart *store.BaseBackup
	start := now.Add(-p.KeepFor)
	for _, b := range complete {
		ch, known := pl.chains[b.ChainID]
		open := known && ch.EndedAt.IsZero()
		reached := known && b.ConsistentLSN <= ch.CursorLSN
		byPolicy := len(pl.kept[b.ID]) > 0
		if reached && n > 0 {
			keep(b, fmt.Sprintf("keep_base_backups: among the %d newest", max(p.KeepBaseBackups, 1)), true)
			byPolicy = true
			n--
		}
		if p.KeepFor > 0 && !b.SnapshotTime.Before(start) {
			keep(b, "keep_for: taken within the last "+days(p.KeepFor), true)
			byPolicy = true
		}
		if r, ok := reach(b); ok && p.KeepFor > 0 && windowStart == nil && !b.SnapshotTime.After(start) && !r.ToTime.Before(start) {
			bb := b
			windowStart = &bb
			keep(b, "keep_for: the newest base before the window's start ("+start.UTC().Format(time.RFC3339)+"), so it stays restorable", true)
			byPolicy = true
		}
		switch {
		case open && !reached:
			keep(b, "not yet reached by the stream (kept until it is restorable)", true)
		case open && reached && !openHasNewest[ch.ID]:
			if !byPolicy {
				pl.Refused = append(pl.Refused, fmt.Sprintf("base backup %d (%s, snapshot %s) is the newest of the chain that reaches now: kept although no rule keeps it (btfu never deletes the only base that restores to now)",
					b.ID, b.ArtifactKey, b.SnapshotTime.UTC().Format(time.RFC3339)))
			}
			keep(b, "the newest base of the chain that reaches now", true)
		}
		if open && reached {
			openHasNewest[ch.ID] = true
		}
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	for _, cal := range []struct {
		key    string
		n      int
		period func(time.Time) string
	}{
		{"keep_daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"keep_weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"keep_monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
	} {
		seen := map[string]bool{}
		for _, b := range complete {
			if len(seen) >= cal.n {
				break
			}
			if _, ok := reach(b); !ok {
				continue // not restorable: it cannot stand for its period
			}
			k := cal.period(b.SnapshotTime.In(loc))
			if seen[k] {
				continue
			}
			seen[k] = true
			keep(b, fmt.Sprintf("%s: the newest of %s (%s)", cal.key, k, loc), false)
		}
	}

	byID := map[int64]store.BaseBackup{}
	for _, b := range complete {
		byID[b.ID] = b
		if _, ok := pl.kept[b.ID]; !ok {
			continue
		}
		if pl.full[b.ID] {
			pl.protectFrom(b.ChainID, b.ConsistentLSN)
			if pl.Horizon.IsZero() || b.SnapshotTime.Before(pl.Horizon) {
				pl.Horizon = b.SnapshotTime
			}
		}
	}
	// Restore points: the segment holding each one's consistent point,
	// so coverage still reaches it (when it is not kept with what follows).
	for id := range pl.kept {
		b := byID[id]
		if pl.full[id] {
			continue
		}
		if s, ok := pointSegment(segs, b); ok {
			if _, dup := pl.pointSeg[s.ID]; !dup {
				pl.pointSeg[s.ID] = fmt.Sprintf("holds the consistent point of base backup %d (%s), a restore point", b.ID, b.SnapshotTime.UTC().Format(time.RFC3339))
			}
		}
	}

	for _, b := range bases {
		v := BaseVerdict{Base: b}
		if why, ok := pl.kept[b.ID]; ok {
			v.Keep, v.Point = why, !pl.full[b.ID]
		} else if v.Drop = pl.dropBase(b, now); v.Drop == "" {
			switch b.Status {
			case store.BackupRunning:
				v.Keep = []string{"running"}
			case store.BackupFailed:
				v.Keep = []string{"failed less than a day ago (kept for the log and status)"}
			default:
				v.Keep = []string{"kept"}
			}
		}
		pl.Bases = append(pl.Bases, v)
	}
	for _, s := range segs {
		v := SegmentVerdict{Segment: s}
		v.Keep, v.Drop = pl.segmentVerdict(s)
		pl.Segments = append(pl.Segments, v)
	}
	pl.Problem = pl.check(chains, before, segs, p, now)
	return pl
}

// rangeOf finds the range of rs that base b restores within.
func rangeOf(rs []coverage.Range, b store.BaseBackup) (coverage.Range, bool) {
	for _, r := range rs {
		if r.ChainID == b.ChainID && r.FromLSN <= b.ConsistentLSN && b.ConsistentLSN <= r.ToLSN {
			return r, true
		}
	}
	return coverage.Range{}, false
}

// pointSegment is the segment a base kept as a restore point needs: the
// first of its chain ending at or after its consistent LSN, else the
// chain's last (whose run reaches the chain's cursor). None when the chain
// has no segment.
func pointSegment(segs []store.Segment, b store.BaseBackup) (store.Segment, bool) {
	var last store.Segment
	found := false
	for _, s := range segs {
		if s.ChainID != b.ChainID {
			continue
		}
		if s.EndLSN >= b.ConsistentLSN {
			return s, true
		}
		last, found = s, true
	}
	return last, found
}

// days renders a duration in days when it is whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// check simulates the deletions: every kept base restorable before stays
// restorable, the keep_for window's start too, and so does now when the
// open chain reached it (the open chain still restores to its cursor).
// It returns what would break, "" when nothing; Apply then deletes
// nothing (ErrRefused; it would be a bug).
func (pl Plan) check(chains []store.Chain, before []coverage.Range, segs []store.Segment, p Policy, now time.Time) string {
	var bases []store.BaseBackup
	for _, v := range pl.Bases {
		if v.Drop == "" && v.Base.Status == store.BackupComplete {
			bases = append(bases, v.Base)
		}
	}
	var left []store.Segment
	for _, v := range pl.Segments {
		if v.Drop == "" {
			left = append(left, v.Segment)
		}
	}
	after := coverage.Compute(slices.Clone(chains), bases, left)
	for _, b := range bases {
		if _, ok := rangeOf(before, b); !ok {
			continue
		}
		if _, ok := rangeOf(after, b); !ok {
			return fmt.Sprintf("base backup %d (%s) would no longer be restorable", b.ID, b.ArtifactKey)
		}
	}
	if p.KeepFor > 0 {
		start := now.Add(-p.KeepFor)
		if coversTime(before, start) && !coversTime(after, start) {
			return fmt.Sprintf("the start of the keep_for window (%s) would no longer be restorable", start.UTC().Format(time.RFC3339))
		}
	}
	for _, ch := range chains {
		if !ch.EndedAt.IsZero() {
			continue
		}
		if reachesCursor(before, ch) && !reachesCursor(after, ch) {
			return fmt.Sprintf("the open chain %d would no longer restore to its newest stored position %s", ch.ID, ch.CursorLSN)
		}
	}
	return ""
}

func coversTime(rs []coverage.Range, t time.Time) bool {
	for _, r := range rs {
		if !t.Before(r.FromTime) && !t.After(r.ToTime) {
			return true
		}
	}
	return false
}

func reachesCursor(rs []coverage.Range, ch store.Chain) bool {
	for _, r := range rs {
		if r.ChainID == ch.ID && r.ToLSN >= ch.CursorLSN {
			return true
		}
	}
	return false
}

// protectFrom keeps the chain's segments that end after lsn.
func (pl Plan) protectFrom(chainID int64, lsn pglogrepl.LSN) {
	if l, ok := pl.protect[chainID]; !ok || lsn < l {
		pl.protect[chainID] = lsn
	}
}

// dropBase says why base backup b goes, or "" when it stays. A complete
// base goes when no rule of decide keeps it: an ended chain that holds no
// kept or running base loses its complete bases with its segments (the
// chain records themselves stay: the store cannot delete chains). Failed
// base backups go once they are older than FailedKeep (24 hours) or than
// the oldest base kept for point-in-time recovery.
func (pl Plan) dropBase(b store.BaseBackup, now time.Time) string {
	switch b.Status {
	case store.BackupComplete:
		if _, ok := pl.kept[b.ID]; !ok {
			return "no rule keeps it"
		}
	case store.BackupFailed:
		at := latest(b.StartedAt, b.FinishedAt, b.SnapshotTime) // its last sign of life
		switch {
		case at.Before(now.Add(-FailedKeep)):
			return "failed more than a day ago"
		case at.Before(pl.Horizon):
			return "failed before the oldest kept base"
		}
	}
	return ""
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	return slices.MaxFunc(ts, time.Time.Compare)
}

// segmentVerdict says why segment s stays, or why it goes.
//
// In each chain holding a base kept for point-in-time recovery, the
// oldest such base's consistent LSN L is that chain's horizon
// (protectFrom): a segment with EndLSN <= L holds only transactions
// committed before L (commit LSN < C, DESIGN 1.3) and goes; a segment
// straddling L stays. A running base backup protects its chain's segments
// from its consistent LSN on in the same way. A restore point keeps the
// first segment of its chain ending at or after its consistent LSN (the
// chain's last when none does: pointSegment); other segments before the
// horizon go, leaving holes between restore points that coverage shows as
// separate ranges. Chains that are ended and hold no kept or running base
// lose all their segments. The open chain keeps its segments even without
// a base: its first base backup may still be running.
func (pl Plan) segmentVerdict(s store.Segment) (keep, drop string) {
	ch, known := pl.chains[s.ChainID]
	if !known {
		return "its chain began after retention listed chains", ""
	}
	if why, ok := pl.pointSeg[s.ID]; ok {
		return why, ""
	}
	if l, ok := pl.protect[s.ChainID]; ok {
		if s.EndLSN <= l {
			return "", "ends at or before the oldest base of its chain kept for point-in-time recovery"
		}
		return "after a base kept for point-in-time recovery", ""
	}
	if ch.EndedAt.IsZero() {
		return "the open chain, whose first base backup may be on the way", ""
	}
	return "", "its chain ended and holds no base kept for point-in-time recovery"
}

// sequenceCut returns the time before which sequence snapshots may be
// deleted: the TakenAt of the newest snapshot taken at or before the
// horizon less SequenceMargin; zero when there is none. snaps are ordered
// by TakenAt.
//
// A restore to T uses the first snapshot taken at or after T, else the
// newest (DESIGN 4.6). Point-in-time targets start at the oldest base kept
// for point-in-time recovery, T0 (the horizon), so older snapshots are
// needed only if clocks disagree; retention keeps the newest snapshot
// taken at or before T0 less SequenceMargin, and everything after it. That
// keeps the newest snapshot at or before T0 and every snapshot of the last
// margin before T0, and the newest snapshot overall is never deleted. A
// restore to an older restore point gets later values (a gap in a
// sequence, never a value handed out twice).
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
