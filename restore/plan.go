// Package restore brings a source back, in an empty database, to a time,
// an LSN or its latest stored state (../shared/DESIGN.md section 4): it
// plans from coverage, verifies every artifact it will use, runs
// pg_restore of the base backup, replays the stored transactions after the
// base's consistent point up to the target, and sets sequences so none
// hands out a value the source had already handed out.
package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/store"
)

// Target is what to restore to; exactly one kind is set.
type Target struct {
	Time   time.Time     // every transaction committed at or before Time
	LSN    pglogrepl.LSN // every transaction whose end LSN is at or before LSN
	Latest bool          // everything stored
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "the latest stored state"
	case !t.Time.IsZero():
		return "all transactions committed at or before " + t.Time.UTC().Format(time.RFC3339Nano)
	}
	return "all transactions ending at or before LSN " + t.LSN.String()
}

// Plan is what a restore will use.
type Plan struct {
	Target   Target
	Base     store.BaseBackup
	Segments []store.Segment
	Range    coverage.Range
	// StopLSN/StopTime are the resolved target (latest: the range end).
	SegmentBytes int64
	Transactions int64 // upper bound: transactions in the chosen segments
	// LateTables joined the publication after registration (explicit-list
	// publications); see LeftOut.
	LateTables []store.TableCoverage
}

// LeftOut returns the tables whose changes this plan cannot replay, one
// record each: tables that joined the publication after the plan's base
// backup (the stream holds their changes only from then on; restores from
// a newer base include them), and tables that are left out of the
// publication at the target (LeftOut records: no usable replica identity).
// (A table created just before the target and not yet added when the
// target was reached, which takes up to the capture's check interval
// without DDL capture, cannot be known.)
func (p *Plan) LeftOut() []store.TableCoverage {
	out, _ := p.leftOut()
	return out
}

// Gone is a table that joined the publication after the plan's base
// backup and was dropped before the target: it is not in the restore, so
// LeftOut does not name it, but its changes between the two are in the
// stream and cannot be replayed on the base's copy of it (the rows it held
// when it joined are in no artifact).
type Gone struct {
	Table     string
	Joined    pglogrepl.LSN // commit LSN of the transaction it joined in
	DroppedAt pglogrepl.LSN // commit LSN of the transaction that dropped it
}

// JoinedThenDropped lists the tables Gone before the target.
func (p *Plan) JoinedThenDropped() []Gone {
	_, gone := p.leftOut()
	return gone
}

func (p *Plan) leftOut() ([]store.TableCoverage, []Gone) {
	t := p.Target
	var gone []Gone
	reached := func(c store.TableCoverage) bool {
		return t.Latest || (t.LSN != 0 && t.LSN >= c.FromLSN) || (!t.Time.IsZero() && !c.AddedAt.After(t.Time))
	}
	last := map[string]store.TableCoverage{}
	lateJoin := map[string]store.TableCoverage{}
	var order []string
	listed := map[string]bool{}
	for _, c := range p.LateTables {
		if !reached(c) {
			continue
		}
		if c.Reason == store.TableDropped && !c.LeftOut {
			// Gone: what was said of it before no longer holds.
			if j, ok := lateJoin[c.Table]; ok {
				gone = append(gone, Gone{Table: c.Table, Joined: j.FromLSN, DroppedAt: c.FromLSN})
			}
			delete(last, c.Table)
			delete(lateJoin, c.Table)
			continue
		}
		if !listed[c.Table] {
			listed[c.Table] = true
			order = append(order, c.Table)
		}
		last[c.Table] = c
		if !c.LeftOut && c.FromLSN > p.Base.ConsistentLSN {
			if _, seen := lateJoin[c.Table]; !seen {
				lateJoin[c.Table] = c
			}
		}
	}
	// By name: records come in the order the stream and the new-tables
	// check wrote them, which races; the plan reads the same every time.
	sort.Strings(order)
	var out []store.TableCoverage
	for _, name := range order {
		c, ok := last[name]
		if !ok {
			continue // dropped since
		}
		if c.LeftOut {
			out = append(out, c)
		} else if c, ok := lateJoin[name]; ok {
			out = append(out, c)
		}
	}
	return out, gone
}

// Describe says why a table of LeftOut is not at the plan's target.
func (p *Plan) Describe(c store.TableCoverage) string {
	if c.LeftOut {
		return fmt.Sprintf("%s: not backed up since %s (%s); it holds at most its rows of the base backup", c.Table, c.FromLSN, c.Reason)
	}
	return fmt.Sprintf("%s: joined the publication at %s, after this base backup (%s); its changes cannot be replayed from it", c.Table, c.FromLSN, p.Base.ConsistentLSN)
}

// ErrOutsideCoverage: the target cannot be reached with what is stored.
var ErrOutsideCoverage = errors.New("target outside coverage")

// MakePlan picks the newest base backup whose range reaches the target with
// no gap (DESIGN 4.2) and the segments to replay after it.
func MakePlan(ctx context.Context, meta store.Store, sourceID int64, t Target) (*Plan, error) {
	return MakePlanFrom(ctx, meta, sourceID, t, "")
}

// MakePlanFrom plans like MakePlan; a non-empty baseKey (an artifact key as
// plans and verify print it) restores from that base backup instead of the
// newest fitting one, e.g. when verify found the newest one damaged. The
// base must be complete, taken at or before the target, and have unbroken
// coverage from it to the target.
func MakePlanFrom(ctx context.Context, meta store.Store, sourceID int64, t Target, baseKey string) (*Plan, error) {
	src, err := coverage.Load(ctx, meta, sourceID)
	if err != nil {
		return nil, err
	}
	bases, segs, ranges := src.Bases, src.Segments, src.Ranges
	if len(ranges) == 0 {
		return nil, fmt.Errorf("%w: nothing is restorable yet (no complete base backup)", ErrOutsideCoverage)
	}
	var chosen *coverage.Range
	var base store.BaseBackup
	var fitting []string
	for i := len(ranges) - 1; i >= 0 && chosen == nil; i-- {
		r := ranges[i]
		if !reaches(r, t) {
			continue
		}
		// The newest complete base in this range at or before the target
		// (or the one asked for).
		// The range's first base always fits: the range reaches the target.
		found := baseKey == "" || r.Base.ArtifactKey == baseKey
		base = r.Base
		fitting = append(fitting, r.Base.ArtifactKey)
		for _, b := range bases {
			if b.ID == r.Base.ID || b.ChainID != r.ChainID || b.Status != store.BackupComplete || b.ConsistentLSN < r.Base.ConsistentLSN || b.ConsistentLSN > r.ToLSN || !before(b, t) {
				continue
			}
			fitting = append(fitting, b.ArtifactKey)
			if (baseKey == "" && b.ConsistentLSN >= base.ConsistentLSN) || b.ArtifactKey == baseKey {
				base, found = b, true
			}
		}
		if found {
			chosen = &ranges[i]
		}
	}
	if chosen == nil && baseKey != "" && len(fitting) > 0 {
		return nil, fmt.Errorf("%w: base backup %s cannot restore to %s (it must be complete, taken at or before the target, with unbroken coverage to it); these can: %s",
			ErrOutsideCoverage, baseKey, t, strings.Join(fitting, ", "))
	}
	if chosen == nil {
		return nil, fmt.Errorf("%w: cannot restore to %s; restorable: %s", ErrOutsideCoverage, t, describe(ranges))
	}
	late, err := meta.ListTableCoverage(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	p := &Plan{Target: t, Base: base, Range: *chosen, LateTables: late}
	for _, s := range segs {
		if s.ChainID != chosen.ChainID || s.EndLSN <= base.ConsistentLSN {
			continue
		}
		if !t.Latest && ((!t.Time.IsZero() && s.FirstCommitAt.After(t.Time)) || (t.LSN != 0 && s.FirstCommitLSN >= t.LSN)) {
			continue
		}
		p.Segments = append(p.Segments, s)
		p.SegmentBytes += s.StoredBytes
		p.Transactions += s.TxCount
	}
	return p, nil
}

func reaches(r coverage.Range, t Target) bool {
	switch {
	case t.Latest:
		return true
	case !t.Time.IsZero():
		return !t.Time.Before(r.FromTime) && !t.Time.After(r.ToTime)
	}
	return t.LSN >= r.FromLSN && t.LSN <= r.ToLSN
}

func before(b store.BaseBackup, t Target) bool {
	switch {
	case t.Latest:
		return true
	case !t.Time.IsZero():
		return !b.SnapshotTime.After(t.Time)
	}
	return b.ConsistentLSN <= t.LSN
}

func describe(ranges []coverage.Range) string {
	var parts []string
	for _, r := range ranges {
		parts = append(parts, fmt.Sprintf("%s .. %s (LSN %s .. %s)", r.FromTime.UTC().Format(time.RFC3339), r.ToTime.UTC().Format(time.RFC3339), r.FromLSN, r.ToLSN))
	}
	return strings.Join(parts, "; ")
}
