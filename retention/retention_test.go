package retention

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
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

func daysAgo(d float64) time.Time { return now.Add(-time.Duration(d * 24 * float64(time.Hour))) }

type world struct {
	meta store.Store
	arts artifact.Store
	src  int64
	ids  map[string]int64 // name -> base backup ID
}

func put(t *testing.T, arts artifact.Store, key string) {
	t.Helper()
	if _, err := arts.Put(context.Background(), key, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
}

// build: chain 1 (ended) with base b1 and two segments; chain 2 (open)
// with bases b2 and b3 and three segments; a failed old base, a failed
// recent one and a running one; sequence snapshots over the period.
func build(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	arts, _ := local.New(t.TempDir())
	src, _ := meta.UpsertSource(ctx, store.Source{Name: "s"})
	w := &world{meta: meta, arts: arts, src: src.ID, ids: map[string]int64{}}
	c1, _ := meta.CreateChain(ctx, store.Chain{SourceID: src.ID, SlotName: "s", StartLSN: 100, StartedAt: daysAgo(10)})
	c2, _ := meta.CreateChain(ctx, store.Chain{SourceID: src.ID, SlotName: "s", StartLSN: 1000, StartedAt: daysAgo(5)})
	base := func(name string, chain int64, c pglogrepl.LSN, at time.Time, status string) {
		key := "s/base/" + name + ".dump"
		b, err := meta.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, ChainID: chain, ConsistentLSN: c, SnapshotTime: at, StartedAt: at, ArtifactKey: key, Status: status, SizeBytes: 10})
		if err != nil {
			t.Fatal(err)
		}
		put(t, arts, key)
		w.ids[name] = b.ID
	}
	seg := func(chain int64, prev, end pglogrepl.LSN, at time.Time) {
		key := "s/segments/" + prev.String() + "-" + end.String()
		key = strings.ReplaceAll(key, "/", "_")
		if _, err := meta.AddSegment(ctx, store.Segment{SourceID: src.ID, ChainID: chain, ArtifactKey: key, PrevEndLSN: prev, FirstCommitLSN: prev + 10, LastCommitLSN: end - 8, EndLSN: end,
			FirstCommitAt: at, LastCommitAt: at, TxCount: 1, ChangeCount: 1, StoredBytes: 5}); err != nil {
			t.Fatal(err)
		}
		put(t, arts, key)
	}
	base("b1", c1.ID, 100, daysAgo(10), store.BackupComplete)
	seg(c1.ID, 100, 200, daysAgo(9))
	seg(c1.ID, 200, 300, daysAgo(8))
	meta.EndChain(ctx, c1.ID, daysAgo(6), "slot lost")
	base("b2", c2.ID, 1000, daysAgo(5), store.BackupComplete)
	seg(c2.ID, 1000, 1100, daysAgo(4))
	seg(c2.ID, 1100, 1200, daysAgo(1.5)) // straddles b3's 1150
	base("b3", c2.ID, 1150, daysAgo(2), store.BackupComplete)
	seg(c2.ID, 1200, 1300, daysAgo(0.5))
	base("failed_old", c2.ID, 1100, daysAgo(3), store.BackupFailed)
	base("failed_new", c2.ID, 1250, now.Add(-time.Hour), store.BackupFailed)
	base("running", c2.ID, 1280, now.Add(-time.Minute), store.BackupRunning)
	for _, d := range []float64{9, 6, 4.9, 3, 2.5, 1, 0.1} {
		meta.AddSequenceSnapshot(ctx, store.SequenceSnapshot{SourceID: src.ID, LSN: 1, TakenAt: daysAgo(d), Values: []store.SequenceValue{{Schema: "public", Name: "q", LastValue: 1}}})
	}
	return w
}

func (w *world) bases(t *testing.T) []string {
	bs, _ := w.meta.ListBaseBackups(context.Background(), w.src)
	var out []string
	for name, id := range w.ids {
		for _, b := range bs {
			if b.ID == id {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (w *world) segEnds(t *testing.T) []pglogrepl.LSN {
	segs, _ := w.meta.ListSegments(context.Background(), w.src, 0)
	var out []pglogrepl.LSN
	for _, s := range segs {
		out = append(out, s.EndLSN)
		if _, err := w.arts.Stat(context.Background(), s.ArtifactKey); err != nil {
			t.Errorf("kept segment %s lost its artifact: %v", s.ArtifactKey, err)
		}
	}
	return out
}

func TestApply(t *testing.T) {
	cases := []struct {
		name       string
		policy     Policy
		bases      string
		segEnds    string
		coverStart pglogrepl.LSN
	}{
		{"keep one", Policy{KeepBaseBackups: 1}, "b3,failed_new,running", "0/4B0,0/514", 1150},
		{"keep two", Policy{KeepBaseBackups: 2}, "b2,b3,failed_new,running", "0/44C,0/4B0,0/514", 1000},
		{"keep more than exist", Policy{KeepBaseBackups: 5}, "b1,b2,b3,failed_new,running", "0/C8,0/12C,0/44C,0/4B0,0/514", 100},
		{"keep for a week", Policy{KeepBaseBackups: 1, KeepFor: 7 * 24 * time.Hour}, "b2,b3,failed_new,running", "0/44C,0/4B0,0/514", 1000},
		{"keep for a day still keeps the newest", Policy{KeepBaseBackups: 1, KeepFor: 24 * time.Hour}, "b3,failed_new,running", "0/4B0,0/514", 1150},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := build(t)
			ctx := context.Background()
			rep, err := Apply(ctx, w.meta, w.arts, w.src, c.policy, now, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(w.bases(t), ","); got != c.bases {
				t.Errorf("bases kept: %s, want %s", got, c.bases)
			}
			var ends []string
			for _, e := range w.segEnds(t) {
				ends = append(ends, e.String())
			}
			if got := strings.Join(ends, ","); got != c.segEnds {
				t.Errorf("segments kept (end LSNs): %s, want %s", got, c.segEnds)
			}
			// Deleted artifacts are gone.
			for _, key := range []string{"s/base/failed_old.dump"} {
				if _, err := w.arts.Stat(ctx, key); !errors.Is(err, artifact.ErrNotFound) {
					t.Errorf("%s still stored", key)
				}
			}
			// What remains is still restorable from the oldest kept base to
			// the open chain's end.
			chains, _ := w.meta.ListChains(ctx, w.src)
			bases, _ := w.meta.ListBaseBackups(ctx, w.src)
			segs, _ := w.meta.ListSegments(ctx, w.src, 0)
			cov := coverage.Compute(chains, bases, segs)
			last := cov[len(cov)-1]
			if cov[0].FromLSN != c.coverStart || last.ToLSN != 1300 {
				t.Errorf("coverage after retention: %+v", cov)
			}
			// Idempotent.
			again, err := Apply(ctx, w.meta, w.arts, w.src, c.policy, now, nil)
			if err != nil || again.DeletedBaseBackups+again.DeletedSegments != 0 || again.DeletedSequenceSnapshots != 0 {
				t.Errorf("second run deleted %+v (%v)", again, err)
			}
			if rep.DeletedBaseBackups == 0 {
				t.Error("the old failed base backup was not deleted")
			}
		})
	}
}

func TestSequenceSnapshotsNeededByKeptBasesStay(t *testing.T) {
	w := build(t)
	ctx := context.Background()
	if _, err := Apply(ctx, w.meta, w.arts, w.src, Policy{KeepBaseBackups: 1}, now, nil); err != nil {
		t.Fatal(err)
	}
	snaps, _ := w.meta.ListSequenceSnapshots(ctx, w.src)
	// b3 at 2 days ago: the newest snapshot at or before (2d + 1h) ago is
	// the one 2.5 days ago; it and everything after stay.
	if len(snaps) != 3 || !snaps[0].TakenAt.Equal(daysAgo(2.5)) {
		var at []time.Time
		for _, s := range snaps {
			at = append(at, s.TakenAt)
		}
		t.Fatalf("snapshots left: %v", at)
	}
}

func TestNoCompleteBaseDeletesNothing(t *testing.T) {
	ctx := context.Background()
	meta, _ := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	defer meta.Close()
	arts, _ := local.New(t.TempDir())
	src, _ := meta.UpsertSource(ctx, store.Source{Name: "s"})
	c, _ := meta.CreateChain(ctx, store.Chain{SourceID: src.ID, SlotName: "s", StartLSN: 100})
	meta.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, ChainID: c.ID, ConsistentLSN: 100, Status: store.BackupFailed, StartedAt: daysAgo(30)})
	rep, err := Apply(ctx, meta, arts, src.ID, Policy{KeepBaseBackups: 1}, now, nil)
	if err != nil || rep.DeletedBaseBackups != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
}
