package capture_test

import (
	"context"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
)

// A backlog that built up while btfu was not streaming is stored as soon
// as it has all arrived, not segment_max_age after its segment opened;
// and only once per connection: what comes after waits for the age as
// before, so a steady stream makes no more segments. The restore to the
// stored end equals the source.
func TestBacklogIsStoredWhenCaughtUp(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	r := f.start()
	f.openChain()
	r.stop(t)
	f.src.SegmentMaxAge = config.Duration(time.Hour)
	for i := 0; i < 200; i++ {
		source.Exec(t, f.db, "INSERT INTO log(v) SELECT md5(g::text) FROM generate_series(1, 10) g")
	}
	backlog := source.CurrentLSN(t)
	before, err := f.meta.ListSegments(context.Background(), f.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	r = f.start()
	f.waitStored(backlog, 60*time.Second) // without the catch-up flush: an hour
	after, _ := f.meta.ListSegments(context.Background(), f.id, 0)
	if len(after) != len(before)+1 {
		t.Fatalf("the backlog took %d segments, want 1", len(after)-len(before))
	}

	// Traffic after the catch-up waits for segment_max_age (an hour here)
	// even though the server reports it has sent everything.
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after the catch-up')")
	later := source.CurrentLSN(t)
	time.Sleep(2 * time.Second)
	if ch := f.openChain(); ch.CursorLSN >= later {
		t.Fatalf("a transaction after the catch-up was stored at once (cursor %s, commit before %s): every idle moment would make a segment", ch.CursorLSN, later)
	}
	if segs, _ := f.meta.ListSegments(context.Background(), f.id, 0); len(segs) != len(after) {
		t.Fatalf("%d segments after the catch-up, want %d", len(segs), len(after))
	}
	r.stop(t) // stores the open segment
	f.restoreEquals(f.openChain().CursorLSN)
}
