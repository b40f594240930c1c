package capture

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/sqlite"
)

// checkWorker is a worker on a fresh SQLite metadata store, enough to
// record what new-tables checks find.
func checkWorker(t *testing.T) (*Worker, store.Store, store.Source) {
	t.Helper()
	meta, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "btfu.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	src, err := meta.UpsertSource(context.Background(), store.Source{Name: "app", Database: "app", SlotName: "s", PublicationName: "p"})
	if err != nil {
		t.Fatal(err)
	}
	return &Worker{Source: &config.Source{Name: "app", Publication: "p"}, Meta: meta, SourceID: src.ID, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, meta, src
}

// A new-tables check lists the tables, then records what it found. When
// the capture trigger records a table joining (its key was added) between
// the listing and the record, the listing's "no key, left out" is stale:
// recording it after the join would make restores leave out a table that
// is in the stream. A verdict newer than the listing stands.
func TestCheckDoesNotOverruleNewerJoin(t *testing.T) {
	ctx := context.Background()
	w, meta, src := checkWorker(t)
	if err := RecordJoined(ctx, meta, src.ID, []string{"public.k1"}, 0x2000, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Listed before the join (0x1000), recorded after it (0x3000).
	w.recordNewTables(ctx, &sourcedb.NewTables{Undecided: []string{"public.k1", "public.k2"}, ListedLSN: 0x1000, LSN: 0x3000})
	recs, err := meta.ListTableCoverage(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	left := store.LeftOutNow(recs)
	if len(left) != 1 || left[0] != "public.k2" {
		t.Fatalf("left out now: %v, want only public.k2 (k1 joined after the listing); records %+v", left, recs)
	}
	// A listing made after the join that still finds no key is believed.
	w.recordNewTables(ctx, &sourcedb.NewTables{Undecided: []string{"public.k1"}, ListedLSN: 0x4000, LSN: 0x5000})
	if recs, err = meta.ListTableCoverage(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	if left := store.LeftOutNow(recs); len(left) != 2 {
		t.Fatalf("left out now: %v, want public.k1 and public.k2; records %+v", left, recs)
	}
}

// Without DDL capture only the check sees drops: a table that joined after
// registration (it has a coverage record) and is no longer listed is
// recorded as dropped, so restores from older bases do not replay its
// changes on the base's copy of it (restore.Plan.JoinedThenDropped).
func TestCheckRecordsDropOfJoinedTable(t *testing.T) {
	ctx := context.Background()
	w, meta, src := checkWorker(t)
	for _, tbl := range []string{"public.gone", "public.kept"} {
		if err := RecordJoined(ctx, meta, src.ID, []string{tbl}, 0x2000, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// A table joined after the listing began is not judged by it.
	if err := RecordJoined(ctx, meta, src.ID, []string{"public.new"}, 0x3500, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.recordNewTables(ctx, &sourcedb.NewTables{Tables: []string{"public.kept"}, ListedLSN: 0x3000, LSN: 0x4000})
	recs, err := meta.ListTableCoverage(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for _, c := range recs {
		if c.Reason == store.TableDropped {
			dropped = append(dropped, c.Table)
		}
	}
	if len(dropped) != 1 || dropped[0] != "public.gone" {
		t.Fatalf("recorded dropped: %v, want public.gone; records %+v", dropped, recs)
	}
	// Said once.
	w.recordNewTables(ctx, &sourcedb.NewTables{Tables: []string{"public.kept", "public.new"}, ListedLSN: 0x5000, LSN: 0x6000})
	if recs, err = meta.ListTableCoverage(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(recs); n != 4 {
		t.Fatalf("%d records after a second check, want 4: %+v", n, recs)
	}
}
