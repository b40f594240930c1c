package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/btfu/btfu/compact"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// firstByte is an object store's latency before the first byte of each
// answer: the store under the bench's artifacts waits this long before
// every Get, as S3 and its kin do (tens of milliseconds).
const firstByte = 20 * time.Millisecond

type slowStore struct{ artifact.Store }

func (s slowStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	select {
	case <-time.After(firstByte):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Get(ctx, key)
}

// segResult is what restoreSegments measured.
type segResult struct {
	compactedDay time.Duration // what a day of default segments adds, compacted
}

// restoreSegments restores the same history of many small segments (one
// every 100ms, as a busy source stores them at the default rotation) with
// and without a first-byte latency, reading segments one after the other,
// reading ahead, and after compaction, and extrapolates what a day of
// default segments adds to a restore. BenchmarkIngest runs it.
func restoreSegments(b *testing.B) segResult {
	ctx := context.Background()
	src, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Stop() })
	dst, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dst.Stop() })

	db := src.CreateDB(b)
	src.Exec(b, db, "CREATE TABLE t(id int PRIMARY KEY, v text)")
	ce := capturetest.Setup(b, src, db, `segment_max_age = "100ms"`)
	w := ce.Worker(b)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	for deadline := time.Now().Add(2 * time.Minute); w.Status().State != "streaming"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("not streaming in 2 minutes")
		}
	}
	const wantSegments = 300
	for i := 0; ; i++ {
		src.Exec(b, db, fmt.Sprintf("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(%d, %d) g", i*10, i*10+9))
		time.Sleep(110 * time.Millisecond)
		if i%20 == 19 {
			if segs, _ := ce.Meta.ListSegments(ctx, ce.SourceID, 0); len(segs) >= wantSegments {
				break
			}
		}
	}
	waitCursor(b, ce.Meta, ce.SourceID, src.CurrentLSN(b))
	cancel()
	<-done
	segs, _ := ce.Meta.ListSegments(ctx, ce.SourceID, 0)
	want := pgtest.QueryValue[string](b, src, db, "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t")

	run := func(arts artifact.Store, ahead int) time.Duration {
		plan, err := restore.MakePlan(ctx, ce.Meta, ce.SourceID, restore.Target{Latest: true})
		if err != nil {
			b.Fatal(err)
		}
		target := dst.CreateDB(b)
		t0 := time.Now()
		if _, err := restore.Run(ctx, ce.Meta, arts, ce.SourceID, plan, restore.Options{TargetDSN: dst.DSN(target), ReadAhead: ahead}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		if got := pgtest.QueryValue[string](b, dst, target, "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t"); got != want {
			b.Fatalf("restored t differs from the source")
		}
		return took
	}
	slow := slowStore{ce.Arts}
	base := run(ce.Arts, 0)
	seq := run(slow, 1)
	ahead := run(slow, 0)
	// The same history compacted (as hours that ended long ago).
	if _, err := compact.Apply(ctx, ce.Meta, ce.Arts, store.Source{ID: ce.SourceID, Name: "app"}, compact.Options{After: time.Hour}, time.Now().Add(3*time.Hour), nil); err != nil {
		b.Fatal(err)
	}
	objects, _ := ce.Meta.ListSegments(ctx, ce.SourceID, 0)
	compacted := run(slow, 0)

	n := float64(len(segs))
	perSeq := (seq - base).Seconds() / n
	perAhead := (ahead - base).Seconds() / n
	perObject := max(compacted-base, 0).Seconds() / float64(len(objects))
	// A day at the defaults: 24 merged hours, and the newest hours not
	// yet merged (compact_after = 1h: up to two hours of segments).
	compactedDay := 24*perObject + float64(2*time.Hour/config.DefaultSegmentMaxAge.D())*perAhead
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "restore of %d segments\tno latency\t%s first byte, one at a time\t%s first byte, read ahead (%d)\tcompacted into %d, read ahead\tread ahead / one at a time\tcompacted / one at a time\t\n", len(segs), firstByte, firstByte, 32, len(objects))
	fmt.Fprintf(tw, "restore time\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t\n", base.Round(time.Millisecond), seq.Round(time.Millisecond), ahead.Round(time.Millisecond), compacted.Round(time.Millisecond), ahead.Seconds()/seq.Seconds(), compacted.Seconds()/seq.Seconds())
	fmt.Fprintf(tw, "added per segment or object\t\t%.1fms\t%.2fms\t%.1fms\t\t\t\n", perSeq*1000, perAhead*1000, perObject*1000)
	fmt.Fprintf(tw, "added by a day of default segments (%d)\t\t%s\t%s\t%s\t\t\t\n", perDay, day(perSeq), day(perAhead), time.Duration(compactedDay*float64(time.Second)).Round(time.Second))
	tw.Flush()
	return segResult{compactedDay: time.Duration(compactedDay * float64(time.Second))}
}

// perDay is how many segments a busy source stores in a day at the
// default segment_max_age.
var perDay = int64(24 * time.Hour / config.DefaultSegmentMaxAge.D())

// day is what a per-segment cost in seconds adds over a day of segments.
func day(perSegment float64) time.Duration {
	return time.Duration(perSegment * float64(perDay) * float64(time.Second)).Round(time.Second)
}
