package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
)

// The running engine merges a source's old segments (here "old" by moving
// compaction's clock three hours on), and the source restores the same;
// with compact_after = "off" it leaves them.
func TestEngineCompactsOldSegments(t *testing.T) {
	every, now := compactEvery, compactNow
	compactEvery, compactNow = 200*time.Millisecond, func() time.Time { return time.Now().Add(3 * time.Hour) }
	t.Cleanup(func() { compactEvery, compactNow = every, now })

	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) {
			extra := `segment_max_age = "100ms"`
			if off {
				extra += "\ncompact_after = \"off\""
			}
			e, db := newEngine(t, extra)
			stop := run(t, e)
			waitState(t, e, "streaming")
			for i := 0; i < 8; i++ {
				source.Exec(t, db, fmt.Sprintf("INSERT INTO t(v) VALUES ('%d'); UPDATE t SET v = v || 'x' WHERE id %% 2 = 0", i))
				time.Sleep(150 * time.Millisecond)
			}
			want := pgtest.QueryValue[string](t, source, db, "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t")
			lsn := source.CurrentLSN(t)
			src, err := e.meta.GetSource(context.Background(), "app")
			if err != nil {
				t.Fatal(err)
			}
			count := func() int {
				segs, err := e.meta.ListSegments(context.Background(), src.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				return len(segs)
			}
			deadline := time.Now().Add(30 * time.Second)
			for count() > 2 && !off {
				if time.Now().After(deadline) {
					t.Fatalf("%d segments 30s on: not compacted", count())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !off {
				segs, _ := e.meta.ListSegments(context.Background(), src.ID, 0)
				most := int64(0)
				for _, s := range segs {
					most = max(most, s.TxCount)
				}
				if most < 4 {
					t.Fatalf("no merged segment: the largest holds %d transactions", most)
				}
			}
			if off {
				n0 := count()
				time.Sleep(time.Second) // five compaction periods
				if n := count(); n0 < 3 || n < n0 {
					t.Fatalf("compact_after = \"off\", yet %d segments became %d", n0, n)
				}
			}
			// Stored up to lsn, then stopped: a restore reads what is recorded.
			source.Exec(t, db, "SELECT pg_logical_emit_message(true, 'btfu.test.nudge', '')")
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				chains, _ := e.meta.ListChains(context.Background(), src.ID)
				if len(chains) > 0 && chains[len(chains)-1].CursorLSN >= lsn {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("not stored")
				}
			}
			stop()
			plan, err := restore.MakePlan(context.Background(), e.meta, src.ID, restore.Target{LSN: lsn})
			if err != nil {
				t.Fatal(err)
			}
			tdb := target.CreateDB(t)
			if _, err := restore.Run(context.Background(), e.meta, e.artifacts, src.ID, plan, restore.Options{TargetDSN: target.DSN(tdb)}); err != nil {
				t.Fatal(err)
			}
			if got := pgtest.QueryValue[string](t, target, tdb, "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t"); got != want {
				t.Errorf("restored table differs from the source")
			}
		})
	}
}
