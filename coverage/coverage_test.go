package coverage

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func seg(chain int64, prev, first, end pglogrepl.LSN, sec int) store.Segment {
	return store.Segment{ChainID: chain, PrevEndLSN: prev, FirstCommitLSN: first, LastCommitLSN: end - 8, EndLSN: end, LastCommitAt: at(sec)}
}

func base(chain int64, c pglogrepl.LSN, sec int, status string) store.BaseBackup {
	return store.BaseBackup{ID: int64(c), ChainID: chain, ConsistentLSN: c, SnapshotTime: at(sec), Status: status}
}

func TestCompute(t *testing.T) {
	open := store.Chain{ID: 1, StartLSN: 100, CursorLSN: 100}
	cases := []struct {
		name   string
		chains []store.Chain
		bases  []store.BaseBackup
		segs   []store.Segment
		want   []Range // only LSNs and times compared
	}{
		{"no base, no coverage", []store.Chain{open}, nil, []store.Segment{seg(1, 100, 120, 200, 5)}, nil},
		{"running base does not count", []store.Chain{open}, []store.BaseBackup{base(1, 100, 0, store.BackupRunning)}, nil, nil},
		{"base alone covers its point", []store.Chain{open}, []store.BaseBackup{base(1, 100, 0, store.BackupComplete)}, nil,
			[]Range{{FromLSN: 100, ToLSN: 100, FromTime: at(0), ToTime: at(0)}}},
		{"contiguous segments", []store.Chain{open}, []store.BaseBackup{base(1, 100, 0, store.BackupComplete)},
			[]store.Segment{seg(1, 100, 120, 200, 5), seg(1, 200, 210, 300, 9)},
			[]Range{{FromLSN: 100, ToLSN: 300, FromTime: at(0), ToTime: at(9)}}},
		{"idle cursor extends time and LSN", []store.Chain{{ID: 1, StartLSN: 100, CursorLSN: 400, CursorTime: at(60)}},
			[]store.BaseBackup{base(1, 100, 0, store.BackupComplete)}, []store.Segment{seg(1, 100, 120, 200, 5)},
			[]Range{{FromLSN: 100, ToLSN: 400, FromTime: at(0), ToTime: at(60)}}},
		{"hole splits; second base starts a new range", []store.Chain{open},
			[]store.BaseBackup{base(1, 100, 0, store.BackupComplete), base(1, 350, 20, store.BackupComplete)},
			[]store.Segment{seg(1, 100, 120, 200, 5), seg(1, 300, 310, 400, 30)},
			[]Range{{FromLSN: 100, ToLSN: 200, FromTime: at(0), ToTime: at(5)}, {FromLSN: 350, ToLSN: 400, FromTime: at(20), ToTime: at(30)}}},
		{"hole with no base after it covers nothing after", []store.Chain{open},
			[]store.BaseBackup{base(1, 100, 0, store.BackupComplete)},
			[]store.Segment{seg(1, 100, 120, 200, 5), seg(1, 300, 310, 400, 30)},
			[]Range{{FromLSN: 100, ToLSN: 200, FromTime: at(0), ToTime: at(5)}}},
		{"retention removed first segments: oldest kept base starts", []store.Chain{open},
			[]store.BaseBackup{base(1, 250, 7, store.BackupComplete)},
			[]store.Segment{seg(1, 200, 210, 300, 9), seg(1, 300, 310, 400, 12)},
			[]Range{{FromLSN: 250, ToLSN: 400, FromTime: at(7), ToTime: at(12)}}},
		{"two chains are two ranges", []store.Chain{{ID: 1, StartLSN: 100, CursorLSN: 200, CursorTime: at(5)}, {ID: 2, StartLSN: 900, CursorLSN: 950, CursorTime: at(90)}},
			[]store.BaseBackup{base(1, 100, 0, store.BackupComplete), base(2, 900, 80, store.BackupComplete)},
			[]store.Segment{seg(1, 100, 120, 200, 5), seg(2, 900, 910, 950, 90)},
			[]Range{{FromLSN: 100, ToLSN: 200, FromTime: at(0), ToTime: at(5)}, {FromLSN: 900, ToLSN: 950, FromTime: at(80), ToTime: at(90)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Compute(c.chains, c.bases, c.segs)
			if len(got) != len(c.want) {
				t.Fatalf("got %d ranges %+v, want %d", len(got), got, len(c.want))
			}
			for i := range got {
				g, w := got[i], c.want[i]
				if g.FromLSN != w.FromLSN || g.ToLSN != w.ToLSN || !g.FromTime.Equal(w.FromTime) || !g.ToTime.Equal(w.ToTime) {
					t.Errorf("range %d: got %s..%s %s..%s, want %s..%s %s..%s", i, g.FromLSN, g.ToLSN, g.FromTime, g.ToTime, w.FromLSN, w.ToLSN, w.FromTime, w.ToTime)
				}
			}
		})
	}
}
