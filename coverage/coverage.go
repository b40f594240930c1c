// Package coverage computes, from metadata alone, the LSN and time ranges
// to which a source can be restored (../shared/DESIGN.md, "coverage").
//
// A restore needs a complete base backup with consistent point C and an
// unbroken run of stored segments from C to the target. Within one chain
// (one incarnation of the main slot) segments follow each other, but
// retention or damage can leave holes, and a base backup taken from a
// second slot (C2) is only useful where the run reaching it continues.
// So a range starts at the oldest base backup inside a run of contiguous
// segments and ends where the run ends; the open chain's run extends to its
// durable cursor (keepalives acknowledged on an idle source).
package coverage

import (
	"context"
	"sort"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

// Range is one restorable interval: any target between From and To (LSN or
// time) can be reached from Base.
type Range struct {
	ChainID  int64
	FromLSN  pglogrepl.LSN
	ToLSN    pglogrepl.LSN
	FromTime time.Time
	ToTime   time.Time
	Base     store.BaseBackup // the oldest base backup that starts this range
}

type run struct {
	start, end pglogrepl.LSN
	endTime    time.Time
}

// Compute returns the restorable ranges of one source, ordered by chain
// and LSN. Only complete base backups count.
func Compute(chains []store.Chain, bases []store.BaseBackup, segs []store.Segment) []Range {
	var out []Range
	sort.Slice(chains, func(i, j int) bool { return chains[i].ID < chains[j].ID })
	for _, ch := range chains {
		var chBases []store.BaseBackup
		for _, b := range bases {
			if b.ChainID == ch.ID && b.Status == store.BackupComplete {
				chBases = append(chBases, b)
			}
		}
		sort.Slice(chBases, func(i, j int) bool { return chBases[i].ConsistentLSN < chBases[j].ConsistentLSN })
		var chSegs []store.Segment
		for _, s := range segs {
			if s.ChainID == ch.ID {
				chSegs = append(chSegs, s)
			}
		}
		sort.Slice(chSegs, func(i, j int) bool { return chSegs[i].FirstCommitLSN < chSegs[j].FirstCommitLSN })
		for _, r := range runs(ch, chSegs) {
			for _, b := range chBases {
				if b.ConsistentLSN >= r.start && b.ConsistentLSN <= r.end {
					to := r.endTime
					if to.Before(b.SnapshotTime) {
						to = b.SnapshotTime
					}
					out = append(out, Range{ChainID: ch.ID, FromLSN: b.ConsistentLSN, ToLSN: max(r.end, b.ConsistentLSN),
						FromTime: b.SnapshotTime, ToTime: to, Base: b})
					break
				}
			}
		}
	}
	return out
}

// runs splits a chain's segments into contiguous runs. The run holding the
// newest segment (or the chain start when there are none) extends to the
// chain's cursor.
func runs(ch store.Chain, segs []store.Segment) []run {
	if len(segs) == 0 {
		return []run{{start: ch.StartLSN, end: max(ch.CursorLSN, ch.StartLSN), endTime: ch.CursorTime}}
	}
	var out []run
	// When retention removed the chain's first segments, the run starts
	// where the oldest remaining segment does.
	cur := run{start: segs[0].PrevEndLSN, end: segs[0].EndLSN, endTime: segs[0].LastCommitAt}
	for _, s := range segs[1:] {
		if s.PrevEndLSN != cur.end {
			out = append(out, cur)
			cur = run{start: s.PrevEndLSN, end: s.EndLSN, endTime: s.LastCommitAt}
			continue
		}
		cur.end, cur.endTime = s.EndLSN, s.LastCommitAt
	}
	if ch.CursorLSN > cur.end {
		cur.end = ch.CursorLSN
	}
	if ch.CursorTime.After(cur.endTime) {
		cur.endTime = ch.CursorTime
	}
	return append(out, cur)
}

// Source is everything coverage is computed from for one source, with the
// result.
type Source struct {
	Chains   []store.Chain
	Bases    []store.BaseBackup
	Segments []store.Segment
	Ranges   []Range
}

// Load reads a source's chains, base backups and segments and computes its
// ranges.
func Load(ctx context.Context, meta store.Store, sourceID int64) (Source, error) {
	var s Source
	var err error
	if s.Chains, err = meta.ListChains(ctx, sourceID); err != nil {
		return s, err
	}
	if s.Bases, err = meta.ListBaseBackups(ctx, sourceID); err != nil {
		return s, err
	}
	if s.Segments, err = meta.ListSegments(ctx, sourceID, 0); err != nil {
		return s, err
	}
	s.Ranges = Compute(s.Chains, s.Bases, s.Segments)
	return s, nil
}
