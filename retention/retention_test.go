package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

const day = 24 * time.Hour

// fixture is a real SQLite metadata store and local artifact store holding
// one source, with records named for assertions.
type fixture struct {
	t          *testing.T
	ctx        context.Context
	meta       store.Store
	arts       artifact.Store
	src        int64
	chains     map[string]int64 // name -> chain ID
	chainNames map[int64]string
	tails      map[string]pglogrepl.LSN // chain name -> EndLSN of its newest segment
	bases      map[string]store.BaseBackup
	segs       map[string]store.Segment
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	arts, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src, err := meta.UpsertSource(ctx, store.Source{Name: "src"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, meta: meta, arts: arts, src: src.ID, chains: map[string]int64{},
		chainNames: map[int64]string{}, tails: map[string]pglogrepl.LSN{},
		bases: map[string]store.BaseBackup{}, segs: map[string]store.Segment{}}
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) put(key string) {
	f.t.Helper()
	_, err := f.arts.Put(f.ctx, key, strings.NewReader(key))
	f.must(err)
}

func (f *fixture) chain(name string, start pglogrepl.LSN, at time.Time) {
	f.t.Helper()
	c, err := f.meta.CreateChain(f.ctx, store.Chain{SourceID: f.src, SlotName: "btfu_" + name, StartLSN: start, StartedAt: at, CursorTime: at})
	f.must(err)
	f.chains[name], f.chainNames[c.ID], f.tails[name] = c.ID, name, start
}

func (f *fixture) endChain(name string, at time.Time) {
	f.t.Helper()
	f.must(f.meta.EndChain(f.ctx, f.chains[name], at, "slot lost"))
}

// advance moves the chain's cursor past its last segment (keepalives).
func (f *fixture) advance(name string, lsn pglogrepl.LSN, at time.Time) {
	f.t.Helper()
	f.must(f.meta.AdvanceChain(f.ctx, f.chains[name], lsn, at))
}

// base records a base backup (with an artifact when key is true).
func (f *fixture) base(name, chain string, c pglogrepl.LSN, at time.Time, status string, key bool) {
	f.t.Helper()
	b := store.BaseBackup{SourceID: f.src, ChainID: f.chains[chain], ConsistentLSN: c, SnapshotTime: at,
		StartedAt: at, Status: status, SizeBytes: 1000}
	if key {
		b.ArtifactKey = "src/base/" + name + ".dump"
		f.put(b.ArtifactKey)
	}
	if status != store.BackupRunning {
		b.FinishedAt = at.Add(time.Minute)
	}
	b, err := f.meta.CreateBaseBackup(f.ctx, b)
	f.must(err)
	f.bases[name] = b
}

// seg records the chain's next segment, ending at end; its transactions
// committed from just after the previous segment's end.
func (f *fixture) seg(name, chain string, end pglogrepl.LSN, at time.Time) {
	f.t.Helper()
	prev := f.tails[chain]
	s, err := f.meta.AddSegment(f.ctx, store.Segment{SourceID: f.src, ChainID: f.chains[chain], FormatVersion: 1,
		ArtifactKey: "src/segments/" + name + ".ndjson.zst", PrevEndLSN: prev, FirstCommitLSN: prev + 1,
		LastCommitLSN: end - 1, EndLSN: end, FirstCommitAt: at, LastCommitAt: at, TxCount: 1, ChangeCount: 1,
		RawBytes: 20, StoredBytes: 10})
	f.must(err)
	f.put(s.ArtifactKey)
	f.tails[chain], f.segs[name] = end, s
}

func (f *fixture) state() (chains []store.Chain, bases []store.BaseBackup, segs []store.Segment) {
	f.t.Helper()
	chains, err := f.meta.ListChains(f.ctx, f.src)
	f.must(err)
	bases, err = f.meta.ListBaseBackups(f.ctx, f.src)
	f.must(err)
	segs, err = f.meta.ListSegments(f.ctx, f.src, 0)
	f.must(err)
	return chains, bases, segs
}

// names returns the sorted names of the named records whose ID is in ids.
func names[T any](named map[string]T, id func(T) int64, ids []int64) []string {
	out := []string{}
	for name, r := range named {
		if slices.Contains(ids, id(r)) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func baseID(b store.BaseBackup) int64 { return b.ID }
func segID(s store.Segment) int64     { return s.ID }

// cover renders ranges as "chain:fromLSN-toLSN" in decimal.
func (f *fixture) cover(rs []coverage.Range) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%d-%d", f.chainNames[r.ChainID], r.FromLSN, r.ToLSN))
	}
	return out
}

// standard builds:
//
//	chain A (ended 7 days ago): base a1 at 100; segments a-1 ..200, a-2 ..300.
//	chain B (open, cursor 1450 by keepalive): base b1 at 1000 (5 days ago),
//	  segments b-1 ..1100, b-2 ..1200 (straddles b2), b-3 ..1300 (ends
//	  exactly at b3), b-4 ..1400; b2 at 1150 (2 days ago), b3 at 1300
//	  (20 hours ago); a failed base 2 hours ago, a running one at 1420.
func standard(f *fixture) {
	f.chain("A", 100, ago(10*day))
	f.base("a1", "A", 100, ago(10*day), store.BackupComplete, true)
	f.seg("a-1", "A", 200, ago(9*day))
	f.seg("a-2", "A", 300, ago(8*day))
	f.endChain("A", ago(7*day))

	f.chain("B", 1000, ago(5*day))
	f.base("b1", "B", 1000, ago(5*day), store.BackupComplete, true)
	f.seg("b-1", "B", 1100, ago(4*day))
	f.seg("b-2", "B", 1200, ago(47*time.Hour))
	f.base("b2", "B", 1150, ago(2*day), store.BackupComplete, true)
	f.seg("b-3", "B", 1300, ago(21*time.Hour))
	f.base("b3", "B", 1300, ago(20*time.Hour), store.BackupComplete, true)
	f.seg("b-4", "B", 1400, ago(10*time.Hour))
	f.base("failed_new", "B", 1410, ago(2*time.Hour), store.BackupFailed, true)
	f.base("running", "B", 1420, ago(5*time.Minute), store.BackupRunning, true)
	f.advance("B", 1450, ago(time.Minute))
}

// newChainWithoutBase builds chain A (ended a day ago) with bases a0 and
// a1, and the open chain B that replaced it, whose first base failed.
func newChainWithoutBase(f *fixture) {
	f.chain("A", 100, ago(3*day))
	f.base("a0", "A", 100, ago(3*day), store.BackupComplete, true)
	f.seg("a-1", "A", 200, ago(3*day))
	f.base("a1", "A", 200, ago(2*day), store.BackupComplete, true)
	f.seg("a-2", "A", 300, ago(2*day))
	f.endChain("A", ago(day))
	f.chain("B", 1000, ago(12*time.Hour))
	f.base("b_failed", "B", 1000, ago(12*time.Hour), store.BackupFailed, true)
	f.seg("b-1", "B", 1100, ago(time.Hour))
}

func TestApply(t *testing.T) {
	all := []string{"a1", "b1", "b2", "b3", "failed_new", "running"}
	allSegs := []string{"a-1", "a-2", "b-1", "b-2", "b-3", "b-4"}
	cases := []struct {
		name   string
		build  func(*fixture)
		policy Policy
		bases  []string // base backups left
		segs   []string // segments left
		kept   []string // Report.Kept
		cover  []string // coverage.Compute over what is left
	}{{
		name:  "keep 1: old ended chain goes entirely, a segment ending exactly at the horizon goes",
		build: standard, policy: Policy{KeepBaseBackups: 1},
		bases: []string{"b3", "failed_new", "running"}, segs: []string{"b-4"}, kept: []string{"b3"},
		cover: []string{"B:1300-1450"},
	}, {
		name:  "keep 2: a segment straddling the oldest kept base stays",
		build: standard, policy: Policy{KeepBaseBackups: 2},
		bases: []string{"b2", "b3", "failed_new", "running"}, segs: []string{"b-2", "b-3", "b-4"}, kept: []string{"b2", "b3"},
		cover: []string{"B:1150-1450"},
	}, {
		name: "keep_for only", build: standard, policy: Policy{KeepBaseBackups: 1, KeepFor: 6 * day},
		bases: []string{"b1", "b2", "b3", "failed_new", "running"}, segs: []string{"b-1", "b-2", "b-3", "b-4"},
		kept: []string{"b1", "b2", "b3"}, cover: []string{"B:1000-1450"},
	}, {
		// The window starts 3 days ago, between b1 and b2: b1 stays so
		// that its start is restorable.
		name: "both, keep_for reaches further, back to the base before its start", build: standard, policy: Policy{KeepBaseBackups: 1, KeepFor: 3 * day},
		bases: []string{"b1", "b2", "b3", "failed_new", "running"}, segs: []string{"b-1", "b-2", "b-3", "b-4"},
		kept: []string{"b1", "b2", "b3"}, cover: []string{"B:1000-1450"},
	}, {
		name: "both, N reaches further", build: standard, policy: Policy{KeepBaseBackups: 3, KeepFor: day},
		bases: []string{"b1", "b2", "b3", "failed_new", "running"}, segs: []string{"b-1", "b-2", "b-3", "b-4"},
		kept: []string{"b1", "b2", "b3"}, cover: []string{"B:1000-1450"},
	}, {
		name: "an ended chain holding a kept base is kept", build: standard, policy: Policy{KeepBaseBackups: 4},
		bases: all, segs: allSegs, kept: []string{"a1", "b1", "b2", "b3"},
		cover: []string{"A:100-300", "B:1000-1450"},
	}, {
		name: "fewer complete bases than N: nothing deleted", build: standard, policy: Policy{KeepBaseBackups: 10},
		bases: all, segs: allSegs, kept: []string{"a1", "b1", "b2", "b3"},
		cover: []string{"A:100-300", "B:1000-1450"},
	}, {
		name: "failed bases: old or before the horizon go, recent and running stay",
		build: func(f *fixture) {
			standard(f)
			f.base("failed_old", "B", 1050, ago(3*day), store.BackupFailed, true)
			f.base("failed_nokey", "A", 150, ago(9*day), store.BackupFailed, false)
			f.base("failed_22h", "B", 1250, ago(22*time.Hour), store.BackupFailed, true) // before b3 (20h)
		},
		policy: Policy{KeepBaseBackups: 1},
		bases:  []string{"b3", "failed_new", "running"}, segs: []string{"b-4"}, kept: []string{"b3"},
		cover: []string{"B:1300-1450"},
	}, {
		name: "failed bases after the horizon: older than a day go, recent stay",
		build: func(f *fixture) {
			standard(f)
			f.base("failed_30h", "B", 1240, ago(30*time.Hour), store.BackupFailed, true) // after b2 (2 days)
			f.base("failed_22h", "B", 1250, ago(22*time.Hour), store.BackupFailed, true)
		},
		policy: Policy{KeepBaseBackups: 2},
		bases:  []string{"b2", "b3", "failed_22h", "failed_new", "running"}, segs: []string{"b-2", "b-3", "b-4"},
		kept: []string{"b2", "b3"}, cover: []string{"B:1150-1450"},
	}, {
		name: "zero complete bases: nothing deleted",
		build: func(f *fixture) {
			f.chain("A", 100, ago(10*day))
			f.base("a_failed", "A", 100, ago(10*day), store.BackupFailed, true)
			f.seg("a-1", "A", 200, ago(9*day))
			f.endChain("A", ago(8*day))
			f.chain("B", 1000, ago(time.Hour))
			f.base("b_running", "B", 1000, ago(time.Hour), store.BackupRunning, true)
			f.seg("b-1", "B", 1100, ago(time.Minute))
		},
		policy: Policy{KeepBaseBackups: 1},
		bases:  []string{"a_failed", "b_running"}, segs: []string{"a-1", "b-1"}, kept: []string{}, cover: []string{},
	}, {
		// Chain E was recorded after the open chain O and its base is
		// newer: keep-1 picks e1, keep_for picks none, yet O reaches now.
		name: "the open chain's newest base stays though older than keep_for and not among the N newest",
		build: func(f *fixture) {
			f.chain("O", 100, ago(12*day))
			f.base("o0", "O", 100, ago(12*day), store.BackupComplete, true)
			f.seg("o-1", "O", 150, ago(11*day))
			f.seg("o-2", "O", 200, ago(10*day))
			f.base("o1", "O", 200, ago(10*day), store.BackupComplete, true)
			f.seg("o-3", "O", 300, ago(time.Hour))
			f.chain("E", 5000, ago(9*day))
			f.base("e1", "E", 5000, ago(9*day), store.BackupComplete, true)
			f.seg("e-1", "E", 5100, ago(9*day))
			f.endChain("E", ago(9*day))
		},
		policy: Policy{KeepBaseBackups: 1, KeepFor: 7 * day},
		bases:  []string{"e1", "o1"}, segs: []string{"e-1", "o-3"}, kept: []string{"e1", "o1"},
		cover: []string{"O:200-300", "E:5000-5100"},
	}, {
		// b2 finished while the stream was still behind its consistent
		// LSN: it is not restorable yet, so b1 must stay.
		name: "a base the stream has not reached yet is kept but does not count",
		build: func(f *fixture) {
			f.chain("B", 1000, ago(2*day))
			f.base("b1", "B", 1000, ago(2*day), store.BackupComplete, true)
			f.seg("b-1", "B", 1100, ago(day))
			f.base("b2", "B", 1500, ago(time.Hour), store.BackupComplete, true)
		},
		policy: Policy{KeepBaseBackups: 1},
		bases:  []string{"b1", "b2"}, segs: []string{"b-1"}, kept: []string{"b1", "b2"}, cover: []string{"B:1000-1100"},
	}, {
		name: "a base the stream never reached in an ended chain is pruned",
		build: func(f *fixture) {
			f.chain("A", 100, ago(3*day))
			f.base("a1", "A", 100, ago(3*day), store.BackupComplete, true)
			f.seg("a-1", "A", 200, ago(3*day))
			f.base("a2", "A", 900, ago(2*day), store.BackupComplete, true)
			f.endChain("A", ago(2*day))
			f.chain("B", 1000, ago(day))
			f.base("b1", "B", 1000, ago(day), store.BackupComplete, true)
			f.seg("b-1", "B", 1100, ago(time.Hour))
		},
		policy: Policy{KeepBaseBackups: 2},
		bases:  []string{"a1", "b1"}, segs: []string{"a-1", "b-1"}, kept: []string{"a1", "b1"},
		cover: []string{"A:100-200", "B:1000-1100"},
	}, {
		// The slot was lost while a base backup was running: the segments
		// from its consistent LSN on stay until it ends one way or another.
		name: "a running base protects its chain's segments",
		build: func(f *fixture) {
			f.chain("A", 100, ago(3*day))
			f.base("a_running", "A", 150, ago(3*day), store.BackupRunning, true)
			f.seg("a-1", "A", 150, ago(3*day))
			f.seg("a-2", "A", 250, ago(3*day))
			f.endChain("A", ago(2*day))
			f.chain("B", 1000, ago(day))
			f.base("b1", "B", 1000, ago(day), store.BackupComplete, true)
			f.seg("b-1", "B", 1100, ago(time.Hour))
		},
		policy: Policy{KeepBaseBackups: 1},
		bases:  []string{"a_running", "b1"}, segs: []string{"a-2", "b-1"}, kept: []string{"b1"}, cover: []string{"B:1000-1100"},
	}, {
		name:  "a new open chain keeps its segments before its first base completes",
		build: newChainWithoutBase, policy: Policy{KeepBaseBackups: 1},
		bases: []string{"a1", "b_failed"}, segs: []string{"a-2", "b-1"}, kept: []string{"a1"}, cover: []string{"A:200-300"},
	}, {
		name:  "KeepBaseBackups below 1 counts as 1 (the newest base is in an ended chain)",
		build: newChainWithoutBase, policy: Policy{KeepBaseBackups: 0, KeepFor: -day},
		bases: []string{"a1", "b_failed"}, segs: []string{"a-2", "b-1"}, kept: []string{"a1"}, cover: []string{"A:200-300"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.build(f)
			chains0, bases0, segs0 := f.state()
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))

			rep, err := Apply(f.ctx, f.meta, f.arts, f.src, c.policy, now, log)
			if err != nil {
				t.Fatal(err)
			}
			chains, bases, segs := f.state()
			baseIDs, segIDs := ids(bases, baseID), ids(segs, segID)
			if got := names(f.bases, baseID, baseIDs); !slices.Equal(got, c.bases) {
				t.Errorf("base backups left %v, want %v", got, c.bases)
			}
			if got := names(f.segs, segID, segIDs); !slices.Equal(got, c.segs) {
				t.Errorf("segments left %v, want %v", got, c.segs)
			}
			if got := names(f.bases, baseID, rep.Kept); !slices.Equal(got, c.kept) {
				t.Errorf("Report.Kept %v, want %v", got, c.kept)
			}

			// Counts, freed bytes, log lines, artifacts.
			var freed int64
			deletedBases, deletedSegs := 0, 0
			for name, b := range f.bases {
				freed += f.checkArtifact(name, b.ArtifactKey, slices.Contains(baseIDs, b.ID), b.SizeBytes, &deletedBases)
			}
			for name, s := range f.segs {
				freed += f.checkArtifact(name, s.ArtifactKey, slices.Contains(segIDs, s.ID), s.StoredBytes, &deletedSegs)
			}
			if rep.DeletedBaseBackups != deletedBases || rep.DeletedSegments != deletedSegs || rep.FreedBytes != freed ||
				rep.ArtifactErrors != 0 || rep.DeletedSchemaSnapshots != 0 {
				t.Errorf("report %+v; deleted %d bases, %d segments, %d bytes", rep, deletedBases, deletedSegs, freed)
			}
			if n := strings.Count(logs.String(), `"kind":"base_backup"`); n != deletedBases {
				t.Errorf("%d base backup deletions logged, want %d:\n%s", n, deletedBases, logs.String())
			}
			if n := strings.Count(logs.String(), `"kind":"segment"`); n != deletedSegs {
				t.Errorf("%d segment deletions logged, want %d:\n%s", n, deletedSegs, logs.String())
			}

			// The contract: what the kept bases could reach before, they
			// reach after, from the oldest kept base of each chain to the
			// chain's cursor.
			var keptBefore []store.BaseBackup
			for _, b := range bases0 {
				if slices.Contains(rep.Kept, b.ID) {
					keptBefore = append(keptBefore, b)
				}
			}
			want := coverage.Compute(chains0, keptBefore, segs0)
			got := coverage.Compute(chains, bases, segs)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("coverage after retention %v, before (kept bases only) %v", f.cover(got), f.cover(want))
			}
			if g := f.cover(got); !slices.Equal(g, c.cover) {
				t.Errorf("coverage %v, want %v", g, c.cover)
			}
			for _, r := range got {
				i := slices.IndexFunc(chains, func(ch store.Chain) bool { return ch.ID == r.ChainID })
				if r.ToLSN != chains[i].CursorLSN {
					t.Errorf("range %v stops before its chain's cursor %d", f.cover([]coverage.Range{r}), chains[i].CursorLSN)
				}
			}

			// Idempotent.
			again, err := Apply(f.ctx, f.meta, f.arts, f.src, c.policy, now, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.DeletedBaseBackups+again.DeletedSegments != 0 || again.DeletedSequenceSnapshots != 0 ||
				again.FreedBytes != 0 || !slices.Equal(again.Kept, rep.Kept) {
				t.Errorf("second run: %+v, first kept %v", again, rep.Kept)
			}
		})
	}
}

func ids[T any](rs []T, id func(T) int64) []int64 {
	var out []int64
	for _, r := range rs {
		out = append(out, id(r))
	}
	return out
}

// checkArtifact asserts that a kept record's artifact is still stored and
// a deleted one's is gone; for a deleted record it counts it and returns
// its size.
func (f *fixture) checkArtifact(name, key string, kept bool, size int64, deleted *int) int64 {
	f.t.Helper()
	if kept {
		if key != "" {
			if _, err := f.arts.Stat(f.ctx, key); err != nil {
				f.t.Errorf("%s is kept but its artifact is not: %v", name, err)
			}
		}
		return 0
	}
	*deleted++
	if key == "" {
		return 0
	}
	if _, err := f.arts.Stat(f.ctx, key); !errors.Is(err, artifact.ErrNotFound) {
		f.t.Errorf("%s was deleted but its artifact %s is still stored (%v)", name, key, err)
	}
	return size
}

func TestSequenceSnapshots(t *testing.T) {
	t0 := ago(day) // the only (so the oldest) kept base
	h := time.Hour
	cases := []struct {
		name  string
		taken []time.Duration // relative to t0
		left  []time.Duration
	}{
		{"older than the margin go, the newest at or before it stays",
			[]time.Duration{-5 * h, -3 * h, -2 * h, -h / 2, h}, []time.Duration{-2 * h, -h / 2, h}},
		{"all long before the base: the newest stays (restore falls back to it)",
			[]time.Duration{-3 * day, -2 * day}, []time.Duration{-2 * day}},
		{"exactly at the margin: it stays, older go",
			[]time.Duration{-2 * h, -h, 0}, []time.Duration{-h, 0}},
		{"all within the margin or after: nothing goes",
			[]time.Duration{-h / 2, 0, 2 * h}, []time.Duration{-h / 2, 0, 2 * h}},
		{"none", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.chain("A", 100, t0)
			f.base("a1", "A", 100, t0, store.BackupComplete, true)
			for _, d := range c.taken {
				_, err := f.meta.AddSequenceSnapshot(f.ctx, store.SequenceSnapshot{SourceID: f.src, LSN: 100, TakenAt: t0.Add(d),
					Values: []store.SequenceValue{{Schema: "public", Name: "invoice_no_seq", LastValue: 42, IsCalled: true}}})
				f.must(err)
			}
			rep, err := Apply(f.ctx, f.meta, f.arts, f.src, Policy{KeepBaseBackups: 1}, now, nil)
			f.must(err)
			snaps, err := f.meta.ListSequenceSnapshots(f.ctx, f.src)
			f.must(err)
			var left []time.Duration
			for _, s := range snaps {
				left = append(left, s.TakenAt.Sub(t0))
			}
			if !slices.Equal(left, c.left) || rep.DeletedSequenceSnapshots != int64(len(c.taken)-len(c.left)) {
				t.Errorf("left %v (deleted %d), want %v", left, rep.DeletedSequenceSnapshots, c.left)
			}
			again, err := Apply(f.ctx, f.meta, f.arts, f.src, Policy{KeepBaseBackups: 1}, now, nil)
			if err != nil || again.DeletedSequenceSnapshots != 0 {
				t.Errorf("second run deleted %d (%v)", again.DeletedSequenceSnapshots, err)
			}
		})
	}
}

// failingDelete is an artifact store whose Delete fails for one key.
type failingDelete struct {
	artifact.Store
	key string
}

func (s failingDelete) Delete(ctx context.Context, key string) error {
	if key == s.key {
		return errors.New("permission denied")
	}
	return s.Store.Delete(ctx, key)
}

func TestArtifactErrorsAreCountedNotFatal(t *testing.T) {
	f := newFixture(t)
	standard(f)
	// b1's artifact is already gone (an earlier run stopped after
	// deleting it): fine. b2's cannot be deleted: counted and logged.
	f.must(f.arts.Delete(f.ctx, f.bases["b1"].ArtifactKey))
	arts := failingDelete{Store: f.arts, key: f.bases["b2"].ArtifactKey}
	var logs bytes.Buffer
	rep, err := Apply(f.ctx, f.meta, arts, f.src, Policy{KeepBaseBackups: 1}, now, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, bases, segs := f.state()
	if rep.ArtifactErrors != 1 || rep.DeletedBaseBackups != 3 || rep.DeletedSegments != 5 || len(bases) != 3 || len(segs) != 1 {
		t.Errorf("report %+v, %d bases and %d segments left", rep, len(bases), len(segs))
	}
	if !strings.Contains(logs.String(), "permission denied") || !strings.Contains(logs.String(), f.bases["b2"].ArtifactKey) {
		t.Errorf("the failure is not logged with its key:\n%s", logs.String())
	}
}

// racingStore runs race once, as the engine might, right after Apply
// listed base backups.
type racingStore struct {
	store.Store
	race func()
}

func (s *racingStore) ListBaseBackups(ctx context.Context, sourceID int64) ([]store.BaseBackup, error) {
	bases, err := s.Store.ListBaseBackups(ctx, sourceID)
	if s.race != nil {
		s.race()
		s.race = nil
	}
	return bases, err
}

func TestRecordsAddedDuringApplyStay(t *testing.T) {
	f := newFixture(t)
	standard(f)
	// The slot is lost and a new chain starts, with its first base
	// running and a first segment, while Apply runs.
	meta := &racingStore{Store: f.meta, race: func() {
		f.endChain("B", ago(time.Second))
		f.chain("C", 2000, now)
		f.base("c_running", "C", 2000, now, store.BackupRunning, true)
		f.seg("c-1", "C", 2100, now)
	}}
	if _, err := Apply(f.ctx, meta, f.arts, f.src, Policy{KeepBaseBackups: 1}, now, nil); err != nil {
		t.Fatal(err)
	}
	_, bases, segs := f.state()
	if got := names(f.segs, segID, ids(segs, segID)); !slices.Equal(got, []string{"b-4", "c-1"}) {
		t.Errorf("segments left %v", got)
	}
	if got := names(f.bases, baseID, ids(bases, baseID)); !slices.Equal(got, []string{"b3", "c_running", "failed_new", "running"}) {
		t.Errorf("base backups left %v", got)
	}
}

// covers reports whether some range reaches instant t.
func covers(rs []coverage.Range, t time.Time) bool {
	for _, r := range rs {
		if !t.Before(r.FromTime) && !t.After(r.ToTime) {
			return true
		}
	}
	return false
}

// keep_for promises every instant of its window: the window's start must
// stay restorable, so the newest base before it (whose chain reaches it)
// and the segments after that base stay.
func TestKeepForWindowStartStaysRestorable(t *testing.T) {
	for _, keepFor := range []time.Duration{3 * day, 36 * time.Hour, 4*day + 12*time.Hour, 6 * day} {
		t.Run(keepFor.String(), func(t *testing.T) {
			f := newFixture(t)
			standard(f)
			chains0, bases0, segs0 := f.state()
			start := now.Add(-keepFor)
			before := covers(coverage.Compute(chains0, bases0, segs0), start)
			if _, err := Apply(f.ctx, f.meta, f.arts, f.src, Policy{KeepBaseBackups: 1, KeepFor: keepFor}, now, nil); err != nil {
				t.Fatal(err)
			}
			chains, bases, segs := f.state()
			after := coverage.Compute(chains, bases, segs)
			if before && !covers(after, start) {
				t.Errorf("the window's start %s was restorable and is not after retention: coverage %v", start, f.cover(after))
			}
			for at := start; at.Before(now); at = at.Add(time.Hour) {
				if covers(coverage.Compute(chains0, bases0, segs0), at) && !covers(after, at) {
					t.Errorf("%s inside keep_for was restorable and is not after retention", at)
					break
				}
			}
		})
	}
}

// compactsFirst is a metadata store in which compaction replaces segments
// b-1 to b-3 by one just before retention deletes its first segment.
type compactsFirst struct {
	store.Store
	f    *fixture
	done bool
}

func (c *compactsFirst) DeleteSegment(ctx context.Context, id int64) error {
	if !c.done {
		c.done = true
		f := c.f
		m := f.segs["b-1"]
		m.ArtifactKey, m.EndLSN, m.LastCommitLSN, m.TxCount, m.ChangeCount = "src/segments/merged.ndjson.zst", 1300, 1299, 3, 3
		f.put(m.ArtifactKey)
		if _, err := c.Store.ReplaceSegments(ctx, []int64{f.segs["b-1"].ID, f.segs["b-2"].ID, f.segs["b-3"].ID}, m); err != nil {
			return err
		}
	}
	return c.Store.DeleteSegment(ctx, id)
}

// A segment compaction replaced after retention planned is not an error:
// the merged segment holds its transactions and stays, and retention
// leaves the replaced object to compaction's sweep.
func TestRetentionAfterCompactionReplacedItsSegments(t *testing.T) {
	f := newFixture(t)
	standard(f)
	rep, err := Apply(f.ctx, &compactsFirst{Store: f.meta, f: f}, f.arts, f.src, Policy{KeepBaseBackups: 1}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, segs := f.state()
	var keys []string
	for _, s := range segs {
		keys = append(keys, s.ArtifactKey)
	}
	if got := strings.Join(keys, " "); got != "src/segments/merged.ndjson.zst src/segments/b-4.ndjson.zst" {
		t.Errorf("segments after retention: %s (report %+v)", got, rep)
	}
	if _, err := f.arts.Stat(f.ctx, "src/segments/merged.ndjson.zst"); err != nil {
		t.Errorf("merged segment: %v", err)
	}
}
