// Package storetest is the contract every store.Store backend must meet.
// A backend's tests call Run with a function that opens a fresh store.
package storetest

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

// Run runs the contract suite. open must return an empty store the first
// time it is called for a test, and reopen that same store when called
// again for the same test (the suite closes the first one before); PerTest
// builds such a function. The suite closes the stores it opens.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"Sources", testSources},
		{"Chains", testChains},
		{"AdvanceChain", testAdvanceChain},
		{"BaseBackups", testBaseBackups},
		{"SegmentRoundTrip", testSegmentRoundTrip},
		{"ChainOrder", testChainOrder},
		{"ChainOrderAfterDeleteAndConflict", testChainOrderAfterDeleteAndConflict},
		{"ConcurrentAddSegment", testConcurrentAddSegment},
		{"ListSegments", testListSegments},
		{"ReplaceSegments", testReplaceSegments},
		{"SchemaSnapshots", testSchemaSnapshots},
		{"SequenceSnapshots", testSequenceSnapshots},
		{"Jobs", testJobs},
		{"Drills", testDrills},
		{"Events", testEvents},
		{"ConcurrentAddEvent", testConcurrentAddEvent},
		{"Times", testTimes},
		{"SchemaVersion", testSchemaVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { st.Close() })
			tc.fn(t, st)
		})
	}
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
}

// PerTest returns an open function for Run. create makes a new location
// (a file path, a database) the first time a test asks; openAt opens the
// store there, every time.
func PerTest(create func(t *testing.T) string, openAt func(t *testing.T, where string) store.Store) func(t *testing.T) store.Store {
	var mu sync.Mutex
	where := map[*testing.T]string{}
	return func(t *testing.T) store.Store {
		t.Helper()
		mu.Lock()
		w, ok := where[t]
		mu.Unlock()
		if !ok {
			w = create(t)
			mu.Lock()
			where[t] = w
			mu.Unlock()
			t.Cleanup(func() {
				mu.Lock()
				delete(where, t)
				mu.Unlock()
			})
		}
		return openAt(t, w)
	}
}

// bigLSN has its top bit set: it does not fit a signed 64-bit integer.
const bigLSN = pglogrepl.LSN(0xFFFF0000_00001234)

// base is a time with microseconds, as a store keeps them.
var base = time.Date(2025, 6, 1, 12, 30, 45, 123456000, time.UTC)

// at is base plus sec seconds.
func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

// must(call)(t) returns call's value, failing t on its error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that err wraps target and mentions every word.
func wantErr(t *testing.T, err, target error, words ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want one wrapping %q", err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func newSource(t *testing.T, st store.Store, name string) store.Source {
	t.Helper()
	return must(st.UpsertSource(t.Context(), store.Source{Name: name, Database: name + "db", SlotName: "btfu_" + name, State: "new"}))(t)
}

func newChain(t *testing.T, st store.Store, src store.Source, start pglogrepl.LSN) store.Chain {
	t.Helper()
	return must(st.CreateChain(t.Context(), store.Chain{SourceID: src.ID, SlotName: src.SlotName, StartLSN: start, StartedAt: at(0)}))(t)
}

// chainOf reads chain id of source src.
func chainOf(t *testing.T, st store.Store, src, id int64) store.Chain {
	t.Helper()
	for _, c := range must(st.ListChains(t.Context(), src))(t) {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("chain %d of source %d not listed", id, src)
	return store.Chain{}
}

// seg is a segment of chain c from prev to end.
func seg(c store.Chain, key string, prev, first, end pglogrepl.LSN) store.Segment {
	return store.Segment{
		SourceID: c.SourceID, ChainID: c.ID, FormatVersion: 1, ArtifactKey: key,
		PrevEndLSN: prev, FirstCommitLSN: first, LastCommitLSN: end - 1, EndLSN: end,
		FirstCommitAt: at(1), LastCommitAt: at(2), TxCount: 1, ChangeCount: 1, RawBytes: 10, StoredBytes: 5,
		SHA256: strings.Repeat("ab", 32), CreatedAt: at(3),
	}
}

func ids[T any](items []T) []int64 {
	out := []int64{}
	for _, it := range items {
		out = append(out, reflect.ValueOf(it).FieldByName("ID").Int())
	}
	return out
}

func testSources(t *testing.T, st store.Store) {
	ctx := t.Context()
	_, err := st.GetSource(ctx, "app")
	wantErr(t, err, store.ErrNotFound, `"app"`)
	_, err = st.UpsertSource(ctx, store.Source{})
	if err == nil {
		t.Error("UpsertSource accepted an empty name")
	}

	in := store.Source{Name: "app", SystemIdentifier: "7312345678901234567", Database: "appdb", SlotName: "btfu_app",
		PublicationName: "btfu_app_pub", State: "new", LastError: "none yet"}
	before := time.Now().Add(-time.Second)
	got := must(st.UpsertSource(ctx, in))(t)
	if got.ID == 0 {
		t.Fatal("no ID")
	}
	for _, ts := range []time.Time{got.CreatedAt, got.UpdatedAt} {
		if ts.Before(before) || ts.After(time.Now().Add(time.Second)) || ts.Location() != time.UTC {
			t.Errorf("timestamp %v is not now in UTC", ts)
		}
	}
	want := in
	want.ID, want.CreatedAt, want.UpdatedAt = got.ID, got.CreatedAt, got.UpdatedAt
	same(t, "created", got, want)
	same(t, "read back", must(st.GetSource(ctx, "app"))(t), got)

	// An upsert changes slot, publication and identity; ID, CreatedAt,
	// State and LastError stay.
	up := must(st.UpsertSource(ctx, store.Source{Name: "app", SystemIdentifier: "42", Database: "other",
		SlotName: "slot2", PublicationName: "pub2", State: "streaming", LastError: "ignored"}))(t)
	want = got
	want.SystemIdentifier, want.Database, want.SlotName, want.PublicationName, want.UpdatedAt = "42", "other", "slot2", "pub2", up.UpdatedAt
	same(t, "upserted", up, want)
	same(t, "upsert read back", must(st.GetSource(ctx, "app"))(t), up)
	if up.UpdatedAt.Before(got.UpdatedAt) {
		t.Errorf("UpdatedAt went back from %v to %v", got.UpdatedAt, up.UpdatedAt)
	}

	zeta, beta := newSource(t, st, "zeta"), newSource(t, st, "beta")
	same(t, "sources by name", ids(must(st.ListSources(ctx))(t)), []int64{got.ID, beta.ID, zeta.ID})

	ok(t, st.SetSourcePaused(ctx, got.ID, true))
	if !must(st.GetSource(ctx, "app"))(t).Paused {
		t.Error("SetSourcePaused(true) did not stick")
	}
	up2 := must(st.UpsertSource(ctx, store.Source{Name: "app", SystemIdentifier: "42", Database: "other", SlotName: "s2", PublicationName: "p2"}))(t)
	if !up2.Paused {
		t.Error("UpsertSource cleared a run-time pause")
	}
	ok(t, st.SetSourcePaused(ctx, got.ID, false))
	tc := must(st.AddTableCoverage(ctx, store.TableCoverage{SourceID: got.ID, Table: "public.late", FromLSN: 0x3000060, AddedAt: at(5)}))(t)
	lo := must(st.AddTableCoverage(ctx, store.TableCoverage{SourceID: got.ID, Table: "public.nokey", FromLSN: 0x3000080, AddedAt: at(6), LeftOut: true, Reason: "no primary key"}))(t)
	same(t, "table coverage", must(st.ListTableCoverage(ctx, got.ID))(t), []store.TableCoverage{tc, lo})
	if must(st.GetSource(ctx, "app"))(t).Paused {
		t.Error("SetSourcePaused(false) did not stick")
	}
	ok(t, st.SetSourceState(ctx, got.ID, "error", "slot lost"))
	s := must(st.GetSource(ctx, "app"))(t)
	if s.State != "error" || s.LastError != "slot lost" {
		t.Errorf("after SetSourceState: state %q, last error %q", s.State, s.LastError)
	}
	if b := must(st.GetSource(ctx, "beta"))(t); b.State != "new" {
		t.Errorf("SetSourceState changed another source: %q", b.State)
	}
	wantErr(t, st.SetSourceState(ctx, 987654, "x", ""), store.ErrNotFound)
}

func testChains(t *testing.T, st store.Store) {
	ctx := t.Context()
	src, other := newSource(t, st, "app"), newSource(t, st, "other")

	in := store.Chain{SourceID: src.ID, SlotName: "btfu_app", StartLSN: bigLSN, StartedAt: at(0)}
	c1 := must(st.CreateChain(ctx, in))(t)
	want := in
	want.ID, want.CursorLSN = c1.ID, bigLSN // the cursor starts at the start
	same(t, "created", c1, want)

	full := store.Chain{SourceID: src.ID, SlotName: "s2", StartLSN: 0x10, StartedAt: at(5), CursorLSN: 0x20,
		CursorTime: at(6), EndedAt: at(7), EndReason: "slot dropped"}
	c2 := must(st.CreateChain(ctx, full))(t)
	full.ID = c2.ID
	same(t, "created with every field", c2, full)
	newChain(t, st, other, 0x30)

	same(t, "chains of source", must(st.ListChains(ctx, src.ID))(t), []store.Chain{c1, c2})
	if n := len(must(st.ListChains(ctx, other.ID))(t)); n != 1 {
		t.Errorf("other source has %d chains, want 1", n)
	}
	_, err := st.CreateChain(ctx, store.Chain{SourceID: 987654, StartLSN: 1})
	wantErr(t, err, store.ErrNotFound)

	ok(t, st.EndChain(ctx, c1.ID, at(9), "slot lost"))
	c1.EndedAt, c1.EndReason = at(9), "slot lost"
	same(t, "ended", chainOf(t, st, src.ID, c1.ID), c1)
	wantErr(t, st.EndChain(ctx, 987654, at(9), "x"), store.ErrNotFound)
}

func testAdvanceChain(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	steps := []struct {
		name    string
		lsn     pglogrepl.LSN
		at      time.Time
		wantLSN pglogrepl.LSN
		wantAt  time.Time
	}{
		{"forward", 2000, at(10), 2000, at(10)},
		{"older LSN ignored, newer time taken", 1500, at(20), 2000, at(20)},
		{"newer LSN taken, older time ignored", 3000, at(15), 3000, at(20)},
		{"zero time ignored", 3500, time.Time{}, 3500, at(20)},
		{"both older", 100, at(1), 3500, at(20)},
		{"same again", 3500, at(20), 3500, at(20)},
	}
	for _, s := range steps {
		ok(t, st.AdvanceChain(ctx, c.ID, s.lsn, s.at))
		got := chainOf(t, st, src.ID, c.ID)
		if got.CursorLSN != s.wantLSN || !got.CursorTime.Equal(s.wantAt) {
			t.Errorf("%s: cursor %s at %v, want %s at %v", s.name, got.CursorLSN, got.CursorTime, s.wantLSN, s.wantAt)
		}
	}

	big := newChain(t, st, src, bigLSN)
	ok(t, st.AdvanceChain(ctx, big.ID, bigLSN+0x100, at(1)))
	ok(t, st.AdvanceChain(ctx, big.ID, bigLSN+0x10, at(0)))
	if got := chainOf(t, st, src.ID, big.ID); got.CursorLSN != bigLSN+0x100 {
		t.Errorf("cursor of chain at a large LSN = %s, want %s", got.CursorLSN, bigLSN+0x100)
	}
	wantErr(t, st.AdvanceChain(ctx, 987654, 1, at(0)), store.ErrNotFound)
}

func testBaseBackups(t *testing.T, st store.Store) {
	ctx := t.Context()
	src, other := newSource(t, st, "app"), newSource(t, st, "other")
	c := newChain(t, st, src, bigLSN)

	in := store.BaseBackup{SourceID: src.ID, ChainID: c.ID, ConsistentLSN: bigLSN, SnapshotName: "00000003-00000002-1",
		SnapshotTime: at(1), StartedAt: at(2), PgDumpVersion: "17.2", ServerVersion: "16.4", Status: store.BackupRunning}
	b1 := must(st.CreateBaseBackup(ctx, in))(t)
	in.ID = b1.ID
	same(t, "created", b1, in)
	same(t, "listed", must(st.ListBaseBackups(ctx, src.ID))(t), []store.BaseBackup{b1})

	// Every mutable field is saved.
	b1.Status, b1.FinishedAt, b1.ArtifactKey, b1.SizeBytes, b1.SHA256, b1.Error =
		store.BackupComplete, at(30), "app/base/1.dump", 1<<40, strings.Repeat("0f", 32), "warning: none"
	ok(t, st.UpdateBaseBackup(ctx, b1))
	same(t, "updated", must(st.ListBaseBackups(ctx, src.ID))(t), []store.BaseBackup{b1})

	// Backups without an artifact yet do not collide; without a chain is fine.
	b2 := must(st.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, Status: store.BackupFailed, Error: "pg_dump: boom"}))(t)
	b3 := must(st.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, ChainID: c.ID, Status: store.BackupRunning}))(t)
	must(st.CreateBaseBackup(ctx, store.BaseBackup{SourceID: other.ID, Status: store.BackupRunning}))(t)
	same(t, "listed", must(st.ListBaseBackups(ctx, src.ID))(t), []store.BaseBackup{b1, b2, b3})

	_, err := st.CreateBaseBackup(ctx, store.BaseBackup{SourceID: src.ID, ArtifactKey: b1.ArtifactKey})
	wantErr(t, err, store.ErrConflict)
	b3.ArtifactKey = b1.ArtifactKey
	wantErr(t, st.UpdateBaseBackup(ctx, b3), store.ErrConflict)
	wantErr(t, st.UpdateBaseBackup(ctx, store.BaseBackup{ID: 987654}), store.ErrNotFound)
	_, err = st.CreateBaseBackup(ctx, store.BaseBackup{SourceID: 987654})
	wantErr(t, err, store.ErrNotFound)

	ok(t, st.DeleteBaseBackup(ctx, b1.ID))
	same(t, "after delete", ids(must(st.ListBaseBackups(ctx, src.ID))(t)), []int64{b2.ID, b3.ID})
	wantErr(t, st.DeleteBaseBackup(ctx, b1.ID), store.ErrNotFound)
	if n := len(must(st.ListChains(ctx, src.ID))(t)); n != 1 {
		t.Errorf("deleting a base backup left %d chains, want 1", n)
	}
}

func testSegmentRoundTrip(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, bigLSN)
	in := store.Segment{SourceID: src.ID, ChainID: c.ID, FormatVersion: 3, ArtifactKey: "app/seg/FFFF0000-00001234.ndjson.zst",
		FirstCommitLSN: bigLSN + 0x10, LastCommitLSN: bigLSN + 0x80, EndLSN: bigLSN + 0x88, PrevEndLSN: bigLSN,
		FirstCommitAt: at(1), LastCommitAt: at(2), TxCount: 3, ChangeCount: 1 << 33, RawBytes: 5 << 30, StoredBytes: 123,
		SHA256: strings.Repeat("9a", 32), CreatedAt: at(3)}
	got := must(st.AddSegment(ctx, in))(t)
	in.ID = got.ID
	same(t, "added", got, in)
	same(t, "listed", must(st.ListSegments(ctx, src.ID, 0))(t), []store.Segment{got})
	if ch := chainOf(t, st, src.ID, c.ID); ch.CursorLSN != in.EndLSN || !ch.CursorTime.Equal(in.LastCommitAt) {
		t.Errorf("cursor %s at %v, want %s at %v", ch.CursorLSN, ch.CursorTime, in.EndLSN, in.LastCommitAt)
	}

	// SourceID comes from the chain when missing; CreatedAt defaults to now.
	next := seg(c, "next", in.EndLSN, in.EndLSN, in.EndLSN+0x10)
	next.SourceID, next.CreatedAt = 0, time.Time{}
	g := must(st.AddSegment(ctx, next))(t)
	if g.SourceID != src.ID || time.Since(g.CreatedAt) > time.Minute {
		t.Errorf("defaults: source %d (want %d), created %v", g.SourceID, src.ID, g.CreatedAt)
	}
	same(t, "listed with defaults", must(st.ListSegments(ctx, src.ID, 0))(t)[1], g)

	other := newSource(t, st, "other")
	wrong := seg(c, "wrong", g.EndLSN, g.EndLSN, g.EndLSN+1)
	wrong.SourceID = other.ID
	if _, err := st.AddSegment(ctx, wrong); err == nil {
		t.Error("AddSegment accepted a segment whose source is not its chain's")
	}
}

func testChainOrder(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	L := func(n pglogrepl.LSN) string { return n.String() }
	cases := []struct {
		name             string
		prev, first, end pglogrepl.LSN
		refused          bool
		words            []string // the error names these
	}{
		{"first segment must follow the chain start", 900, 1000, 1100, true, []string{L(1000), L(900)}},
		{"first commit before prev end", 1000, 990, 1100, true, []string{L(990), L(1000)}},
		{"end not after prev end", 1000, 1000, 1000, true, nil},
		{"first segment", 1000, 1010, 1100, false, nil},
		{"gap", 1200, 1210, 1300, true, []string{"expected", L(1100), "got", L(1200)}},
		{"overlap", 1050, 1060, 1300, true, []string{L(1100), L(1050)}},
		{"duplicate", 1000, 1010, 1100, true, []string{L(1100), L(1000)}},
		{"second segment starts at prev end", 1100, 1100, 1200, false, nil},
		{"third segment", 1200, 1250, 1300, false, nil},
	}
	cursor, added := pglogrepl.LSN(1000), 0
	for i, tc := range cases {
		s := seg(c, fmt.Sprintf("seg-%d", i), tc.prev, tc.first, tc.end)
		s.LastCommitAt = at(10 + i)
		_, err := st.AddSegment(ctx, s)
		if tc.refused {
			if err == nil {
				t.Fatalf("%s: accepted", tc.name)
			}
			wantErr(t, err, store.ErrChainOrder, tc.words...)
		} else {
			ok(t, err)
			cursor, added = tc.end, added+1
		}
		ch := chainOf(t, st, src.ID, c.ID)
		if ch.CursorLSN != cursor {
			t.Errorf("%s: cursor %s, want %s", tc.name, ch.CursorLSN, cursor)
		}
		if !tc.refused && !ch.CursorTime.Equal(s.LastCommitAt) {
			t.Errorf("%s: cursor time %v, want %v", tc.name, ch.CursorTime, s.LastCommitAt)
		}
		if n := len(must(st.ListSegments(ctx, src.ID, 0))(t)); n != added {
			t.Errorf("%s: %d segments recorded, want %d", tc.name, n, added)
		}
	}
	_, err := st.AddSegment(ctx, store.Segment{ChainID: 987654, PrevEndLSN: 1, FirstCommitLSN: 1, EndLSN: 2})
	wantErr(t, err, store.ErrNotFound)
}

func testChainOrderAfterDeleteAndConflict(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	must(st.AddSegment(ctx, seg(c, "s1", 1000, 1000, 1100)))(t)
	s2 := must(st.AddSegment(ctx, seg(c, "s2", 1100, 1100, 1200)))(t)

	// Deleting the newest record does not let the chain step back.
	ok(t, st.DeleteSegment(ctx, s2.ID))
	wantErr(t, st.DeleteSegment(ctx, s2.ID), store.ErrNotFound)
	_, err := st.AddSegment(ctx, seg(c, "again", 1100, 1100, 1200))
	wantErr(t, err, store.ErrChainOrder)

	// A refused key rolls everything back: the same segment under another
	// key is still next.
	_, err = st.AddSegment(ctx, seg(c, "s1", 1200, 1200, 1300))
	wantErr(t, err, store.ErrConflict)
	if ch := chainOf(t, st, src.ID, c.ID); ch.CursorLSN != 1200 {
		t.Errorf("cursor after a refused segment = %s, want 0/4B0", ch.CursorLSN)
	}
	must(st.AddSegment(ctx, seg(c, "s3", 1200, 1200, 1300)))(t)

	// A segment never moves the cursor back.
	ok(t, st.AdvanceChain(ctx, c.ID, 10000, at(100)))
	must(st.AddSegment(ctx, seg(c, "s4", 1300, 1300, 1400)))(t)
	if ch := chainOf(t, st, src.ID, c.ID); ch.CursorLSN != 10000 || !ch.CursorTime.Equal(at(100)) {
		t.Errorf("cursor moved back to %s at %v", ch.CursorLSN, ch.CursorTime)
	}
	same(t, "keys", keys(must(st.ListSegments(ctx, src.ID, 0))(t)), []string{"s1", "s3", "s4"})
}

// testReplaceSegments: compaction swaps consecutive segments for one that
// spans them, all at once or not at all, and the chain goes on from its
// cursor as before.
func testReplaceSegments(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	s1 := must(st.AddSegment(ctx, seg(c, "s1", 1000, 1000, 1100)))(t)
	s2 := must(st.AddSegment(ctx, seg(c, "s2", 1100, 1110, 1200)))(t)
	s3 := must(st.AddSegment(ctx, seg(c, "s3", 1200, 1200, 1300)))(t)
	must(st.AddSegment(ctx, seg(c, "s4", 1300, 1300, 1400)))(t)
	merged := func(key string, from, to store.Segment) store.Segment {
		m := seg(c, key, from.PrevEndLSN, from.FirstCommitLSN, to.EndLSN)
		m.LastCommitLSN = to.LastCommitLSN
		m.TxCount, m.ChangeCount = to.TxCount*2, to.ChangeCount*2
		return m
	}

	// Anything that does not span exactly what it replaces is refused,
	// and nothing changes.
	bad := merged("m", s1, s2)
	bad.EndLSN = 1250
	_, err := st.ReplaceSegments(ctx, []int64{s1.ID, s2.ID}, bad)
	wantErr(t, err, store.ErrChainOrder, "ends at")
	bad = merged("m", s1, s2)
	bad.TxCount = 3
	if _, err := st.ReplaceSegments(ctx, []int64{s1.ID, s2.ID}, bad); err == nil || !strings.Contains(err.Error(), "transactions") {
		t.Errorf("a replacement with the wrong transaction count: %v", err)
	}
	_, err = st.ReplaceSegments(ctx, []int64{s1.ID, s3.ID}, merged("m", s1, s3))
	wantErr(t, err, store.ErrChainOrder, "not where segment")
	// A key already recorded is a conflict, rolled back whole.
	_, err = st.ReplaceSegments(ctx, []int64{s1.ID, s2.ID}, merged("s4", s1, s2))
	wantErr(t, err, store.ErrConflict)
	same(t, "keys after refusals", keys(must(st.ListSegments(ctx, src.ID, 0))(t)), []string{"s1", "s2", "s3", "s4"})

	m := must(st.ReplaceSegments(ctx, []int64{s1.ID, s2.ID, s3.ID}, func() store.Segment {
		m := merged("m", s1, s3)
		m.TxCount, m.ChangeCount = 3, 3
		return m
	}()))(t)
	got := must(st.ListSegments(ctx, src.ID, 0))(t)
	same(t, "keys", keys(got), []string{"m", "s4"})
	if got[0].ID != m.ID || got[0].PrevEndLSN != 1000 || got[0].EndLSN != 1300 || got[0].TxCount != 3 {
		t.Errorf("merged segment listed as %+v", got[0])
	}
	// Replaced once, gone: a second compaction of the same segments (one
	// that planned before the first switched) changes nothing.
	_, err = st.ReplaceSegments(ctx, []int64{s1.ID, s2.ID}, merged("m2", s1, s2))
	wantErr(t, err, store.ErrNotFound)
	// The chain goes on after its newest segment, not after the merged one.
	if ch := chainOf(t, st, src.ID, c.ID); ch.CursorLSN != 1400 {
		t.Errorf("cursor after a replacement = %s, want 0/578", ch.CursorLSN)
	}
	must(st.AddSegment(ctx, seg(c, "s5", 1400, 1400, 1500)))(t)
}

func keys(segs []store.Segment) []string {
	var out []string
	for _, s := range segs {
		out = append(out, s.ArtifactKey)
	}
	return out
}

// testConcurrentAddSegment: of several writers racing to add the next
// segment of one chain, exactly one wins.
func testConcurrentAddSegment(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.AddSegment(ctx, seg(c, fmt.Sprintf("racer-%d", i), 1000, 1000, 1100))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrChainOrder):
			t.Errorf("loser failed with %v, want ErrChainOrder", err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers added the segment, want 1", won)
	}
	if n := len(must(st.ListSegments(ctx, src.ID, 0))(t)); n != 1 {
		t.Errorf("%d segments recorded, want 1", n)
	}
}

func testListSegments(t *testing.T, st store.Store) {
	ctx := t.Context()
	src, other := newSource(t, st, "app"), newSource(t, st, "other")
	a, b := newChain(t, st, src, 1000), newChain(t, st, src, 500)
	o := newChain(t, st, other, 1000)
	// Chain b first, and at lower LSNs: the order is by chain, then LSN.
	b1 := must(st.AddSegment(ctx, seg(b, "b1", 500, 510, 600)))(t)
	b2 := must(st.AddSegment(ctx, seg(b, "b2", 600, 600, 700)))(t)
	a1 := must(st.AddSegment(ctx, seg(a, "a1", 1000, 1010, 1100)))(t)
	a2 := must(st.AddSegment(ctx, seg(a, "a2", 1100, 1120, 1200)))(t)
	must(st.AddSegment(ctx, seg(o, "o1", 1000, 1000, 1100)))(t)

	cases := []struct {
		from pglogrepl.LSN
		want []store.Segment
	}{
		{0, []store.Segment{a1, a2, b1, b2}},
		{599, []store.Segment{a1, a2, b1, b2}},
		{600, []store.Segment{a1, a2, b2}}, // EndLSN == from is excluded
		{1100, []store.Segment{a2}},
		{1150, []store.Segment{a2}},
		{1200, nil},
	}
	for _, tc := range cases {
		got := must(st.ListSegments(ctx, src.ID, tc.from))(t)
		same(t, "segments from "+tc.from.String(), ids(got), ids(tc.want))
	}
	same(t, "all fields", must(st.ListSegments(ctx, src.ID, 0))(t), []store.Segment{a1, a2, b1, b2})
}

func testSchemaSnapshots(t *testing.T, st store.Store) {
	ctx := t.Context()
	src, other := newSource(t, st, "app"), newSource(t, st, "other")
	add := func(key string, sec int, lsn pglogrepl.LSN) store.SchemaSnapshot {
		in := store.SchemaSnapshot{SourceID: src.ID, LSN: lsn, TakenAt: at(sec), ArtifactKey: key, SizeBytes: int64(sec) << 20, SHA256: strings.Repeat("c3", 32)}
		got := must(st.AddSchemaSnapshot(ctx, in))(t)
		in.ID = got.ID
		same(t, "added", got, in)
		return got
	}
	late, early, big := add("late", 20, 2000), add("early", 10, 1000), add("big", 30, bigLSN)
	must(st.AddSchemaSnapshot(ctx, store.SchemaSnapshot{SourceID: other.ID, ArtifactKey: "other", TakenAt: at(1)}))(t)
	same(t, "by time", must(st.ListSchemaSnapshots(ctx, src.ID))(t), []store.SchemaSnapshot{early, late, big})

	_, err := st.AddSchemaSnapshot(ctx, store.SchemaSnapshot{SourceID: src.ID, ArtifactKey: "late"})
	wantErr(t, err, store.ErrConflict)
	_, err = st.AddSchemaSnapshot(ctx, store.SchemaSnapshot{SourceID: 987654, ArtifactKey: "orphan"})
	wantErr(t, err, store.ErrNotFound)
}

func testSequenceSnapshots(t *testing.T, st store.Store) {
	ctx := t.Context()
	src, other := newSource(t, st, "app"), newSource(t, st, "other")
	vals := []store.SequenceValue{
		{Schema: "public", Name: "a_id_seq", LastValue: 1, IsCalled: false},
		{Schema: "public", Name: "b_id_seq", LastValue: math.MaxInt64, IsCalled: true},
		{Schema: "sales", Name: "invoice_no", LastValue: -42, IsCalled: true},
	}
	add := func(sec int, lsn pglogrepl.LSN, v []store.SequenceValue) store.SequenceSnapshot {
		in := store.SequenceSnapshot{SourceID: src.ID, LSN: lsn, TakenAt: at(sec), Values: v}
		got := must(st.AddSequenceSnapshot(ctx, in))(t)
		in.ID = got.ID
		same(t, "added", got, in)
		return got
	}
	s10 := add(10, bigLSN, vals)
	s5 := add(5, 100, nil)
	s20 := add(20, 200, vals[2:])
	o := must(st.AddSequenceSnapshot(ctx, store.SequenceSnapshot{SourceID: other.ID, TakenAt: at(1), Values: vals[:1]}))(t)
	same(t, "by time", must(st.ListSequenceSnapshots(ctx, src.ID))(t), []store.SequenceSnapshot{s5, s10, s20})

	// A snapshot naming a sequence twice is refused whole.
	_, err := st.AddSequenceSnapshot(ctx, store.SequenceSnapshot{SourceID: src.ID, TakenAt: at(25), Values: append(vals[:1:1], vals[0])})
	wantErr(t, err, store.ErrConflict)
	_, err = st.AddSequenceSnapshot(ctx, store.SequenceSnapshot{SourceID: 987654, TakenAt: at(25)})
	wantErr(t, err, store.ErrNotFound)
	same(t, "after refusals", ids(must(st.ListSequenceSnapshots(ctx, src.ID))(t)), []int64{s5.ID, s10.ID, s20.ID})

	if n := must(st.DeleteSequenceSnapshotsBefore(ctx, src.ID, at(10)))(t); n != 1 {
		t.Errorf("deleted %d before %v, want 1 (a snapshot at the bound stays)", n, at(10))
	}
	same(t, "after delete", must(st.ListSequenceSnapshots(ctx, src.ID))(t), []store.SequenceSnapshot{s10, s20})
	if n := must(st.DeleteSequenceSnapshotsBefore(ctx, src.ID, at(21)))(t); n != 2 {
		t.Errorf("deleted %d, want 2", n)
	}
	same(t, "other source untouched", must(st.ListSequenceSnapshots(ctx, other.ID))(t), []store.SequenceSnapshot{o})
	// Values went with their snapshots: a new one holds only its own.
	s30 := add(30, 300, vals[:1])
	same(t, "after delete all", must(st.ListSequenceSnapshots(ctx, src.ID))(t), []store.SequenceSnapshot{s30})
}

func testJobs(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	in := store.Job{SourceID: src.ID, Kind: "base_backup", StartedAt: at(1), Detail: "scheduled"}
	j1 := must(st.StartJob(ctx, in))(t)
	in.ID, in.Status = j1.ID, store.JobRunning // an empty status means running
	same(t, "started", j1, in)
	j2 := must(st.StartJob(ctx, store.Job{Kind: "retention", Status: store.JobRunning, StartedAt: at(2)}))(t)
	j3 := must(st.StartJob(ctx, store.Job{SourceID: src.ID, Kind: "verify", StartedAt: at(3)}))(t)

	ok(t, st.FinishJob(ctx, j1.ID, store.JobOK, "dump of 1.2 GB", "", at(9)))
	ok(t, st.FinishJob(ctx, j3.ID, store.JobFailed, "", "checksum mismatch", at(10)))
	wantErr(t, st.FinishJob(ctx, 987654, store.JobOK, "", "", at(1)), store.ErrNotFound)
	j1.Status, j1.Detail, j1.FinishedAt = store.JobOK, "dump of 1.2 GB", at(9)
	j3.Status, j3.Error, j3.FinishedAt = store.JobFailed, "checksum mismatch", at(10)

	cases := []struct {
		source int64
		limit  int
		want   []store.Job
	}{
		{0, 0, []store.Job{j3, j2, j1}},
		{src.ID, 0, []store.Job{j3, j1}},
		{0, 2, []store.Job{j3, j2}},
		{src.ID, 1, []store.Job{j3}},
	}
	for _, tc := range cases {
		same(t, fmt.Sprintf("jobs of source %d, limit %d", tc.source, tc.limit), must(st.ListJobs(ctx, tc.source, tc.limit))(t), tc.want)
	}
	_, err := st.StartJob(ctx, store.Job{SourceID: 987654, Kind: "x"})
	wantErr(t, err, store.ErrNotFound)
}

func testDrills(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	other := newSource(t, st, "other")
	in := store.Drill{SourceID: src.ID, StartedAt: at(1), Trigger: "manual"}
	d1 := must(st.StartDrill(ctx, in))(t)
	in.ID, in.Status = d1.ID, store.DrillRunning // an empty status means running
	same(t, "started", d1, in)
	same(t, "running, read back", must(st.ListDrills(ctx, src.ID, 0))(t), []store.Drill{d1})

	d1.FinishedAt, d1.Status, d1.LSN, d1.BaseKey = at(9), store.DrillFailed, pglogrepl.LSN(math.MaxUint64-5), "app/base/x.dump"
	d1.Category, d1.Error, d1.Hint = "compare", "public.t differs", "look at replay"
	d1.Phases = []store.DrillPhase{{Name: "hash_source", Took: 1500 * time.Millisecond}, {Name: "restore", Took: 4*time.Minute + 12*time.Second}}
	d1.Tables = []store.DrillTable{{Table: "public.t", Verdict: store.VerdictDiffers, SourceRows: 10, RestoredRows: 9},
		{Table: "public.nokey", Verdict: store.VerdictLeftOut, Reason: "no usable replica identity"}}
	d1.SourceBytes, d1.RestoredBytes, d1.ArtifactBytes = 1<<40, 1<<30, 12345
	ok(t, st.FinishDrill(ctx, d1))
	wantErr(t, st.FinishDrill(ctx, store.Drill{ID: 987654, Status: store.DrillPassed}), store.ErrNotFound)
	d2 := must(st.StartDrill(ctx, store.Drill{SourceID: src.ID, StartedAt: at(20), FinishedAt: at(30), Status: store.DrillPassed, Trigger: "schedule",
		Phases: []store.DrillPhase{{Name: "restore", Took: time.Second}}}))(t)
	o := must(st.StartDrill(ctx, store.Drill{SourceID: other.ID, StartedAt: at(5)}))(t)

	same(t, "all of app, newest first", must(st.ListDrills(ctx, src.ID, 0))(t), []store.Drill{d2, d1})
	same(t, "newest of app", must(st.ListDrills(ctx, src.ID, 1))(t), []store.Drill{d2})
	same(t, "other", must(st.ListDrills(ctx, other.ID, 0))(t), []store.Drill{o})
	if got := d1.RTO(); got != 4*time.Minute+12*time.Second {
		t.Errorf("RTO = %s, want the restore phase 4m12s", got)
	}
	_, err := st.StartDrill(ctx, store.Drill{SourceID: 987654})
	wantErr(t, err, store.ErrNotFound)
}

func testEvents(t *testing.T, st store.Store) {
	ctx := t.Context()
	a, b := newSource(t, st, "a"), newSource(t, st, "b")
	in := store.Event{SourceID: a.ID, At: at(1), Level: "info", Kind: "backup.finished", Message: "base backup done",
		Attrs: map[string]string{"key": "a/base/1.dump", "size": "12 MB", "quote": `"{}"`}}
	e0 := must(st.AddEvent(ctx, in))(t)
	in.ID = e0.ID
	same(t, "added", e0, in)

	// The rest: 1..8, with empty attrs read back as nil.
	spec := []struct {
		src   int64
		level string
	}{{b.ID, "debug"}, {0, "warn"}, {a.ID, "error"}, {a.ID, "debug"}, {b.ID, "info"}, {0, "error"}, {a.ID, "warn"}, {b.ID, "fatal"}}
	all := []store.Event{e0}
	for i, s := range spec {
		e := must(st.AddEvent(ctx, store.Event{SourceID: s.src, At: at(2 + i), Level: s.level, Kind: "k", Message: fmt.Sprint(i), Attrs: map[string]string{}}))(t)
		if e.Attrs != nil {
			t.Errorf("empty attrs returned as %#v, want nil", e.Attrs)
		}
		all = append(all, e)
	}
	pick := func(idx ...int) []int64 {
		out := []int64{}
		for _, i := range idx {
			out = append(out, all[i].ID)
		}
		return out
	}
	cases := []struct {
		name string
		f    store.EventFilter
		want []int64
	}{
		{"all", store.EventFilter{}, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"source", store.EventFilter{SourceID: a.ID}, pick(0, 3, 4, 7)},
		{"min debug", store.EventFilter{MinLevel: "debug"}, pick(0, 1, 2, 3, 4, 5, 6, 7)},
		{"min info", store.EventFilter{MinLevel: "info"}, pick(0, 2, 3, 5, 6, 7)},
		{"min warn", store.EventFilter{MinLevel: "warn"}, pick(2, 3, 6, 7)},
		{"min error", store.EventFilter{MinLevel: "error"}, pick(3, 6)},
		{"after", store.EventFilter{AfterID: all[5].ID}, pick(6, 7, 8)},
		{"newest 3", store.EventFilter{Limit: 3}, pick(6, 7, 8)},
		{"limit above count", store.EventFilter{Limit: 100}, pick(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"combined", store.EventFilter{SourceID: a.ID, MinLevel: "info", AfterID: all[0].ID, Limit: 1}, pick(7)},
		{"combined, limit 2", store.EventFilter{SourceID: a.ID, MinLevel: "info", Limit: 2}, pick(3, 7)},
		{"after the last", store.EventFilter{AfterID: all[8].ID}, []int64{}},
	}
	for _, tc := range cases {
		same(t, tc.name, ids(must(st.ListEvents(ctx, tc.f))(t)), tc.want)
	}
	same(t, "every field", must(st.ListEvents(ctx, store.EventFilter{}))(t)[:2], all[:2])
	if _, err := st.ListEvents(ctx, store.EventFilter{MinLevel: "loud"}); err == nil {
		t.Error("unknown MinLevel accepted")
	}
	e := must(st.AddEvent(ctx, store.Event{Level: "info", Kind: "now"}))(t)
	if time.Since(e.At) > time.Minute || e.At.Location() != time.UTC {
		t.Errorf("zero At became %v, want now in UTC", e.At)
	}
	_, err := st.AddEvent(ctx, store.Event{SourceID: 987654, Level: "info"})
	wantErr(t, err, store.ErrNotFound)
}

func testConcurrentAddEvent(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, err := st.AddEvent(ctx, store.Event{SourceID: src.ID, At: at(i), Level: "info", Kind: "load", Message: fmt.Sprintf("%d/%d", w, i)})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	events := must(st.ListEvents(ctx, store.EventFilter{SourceID: src.ID}))(t)
	if len(events) != writers*each {
		t.Fatalf("%d events, want %d", len(events), writers*each)
	}
	seen := map[string]bool{}
	for i, e := range events {
		if i > 0 && e.ID <= events[i-1].ID {
			t.Fatalf("IDs not ascending: %d after %d", e.ID, events[i-1].ID)
		}
		seen[e.Message] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct messages, want %d", len(seen), writers*each)
	}
}

func testTimes(t *testing.T, st store.Store) {
	ctx := t.Context()
	src := newSource(t, st, "app")
	zone := time.FixedZone("IST", 5*3600+1800)
	cases := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"microseconds", at(0), at(0)},
		{"other zone, nanoseconds", time.Date(2024, 2, 29, 23, 59, 59, 999_999_999, zone), time.Date(2024, 2, 29, 18, 29, 59, 999_999_000, time.UTC)},
		{"before 1970", time.Date(1969, 7, 20, 20, 17, 40, 123_456_000, time.UTC), time.Date(1969, 7, 20, 20, 17, 40, 123_456_000, time.UTC)},
		{"zero", time.Time{}, time.Time{}},
	}
	for _, tc := range cases {
		c := must(st.CreateChain(ctx, store.Chain{SourceID: src.ID, StartLSN: 1, StartedAt: tc.in}))(t)
		same(t, tc.name+" returned", c.StartedAt, tc.want)
		same(t, tc.name+" read back", chainOf(t, st, src.ID, c.ID).StartedAt, tc.want)
	}
}

func testSchemaVersion(t *testing.T, st store.Store) {
	if v := must(st.SchemaVersion(t.Context()))(t); v != store.SchemaVersion {
		t.Errorf("SchemaVersion = %d, want %d", v, store.SchemaVersion)
	}
}

func testReopen(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := t.Context()
	st := open(t)
	src := newSource(t, st, "app")
	c := newChain(t, st, src, 1000)
	g := must(st.AddSegment(ctx, seg(c, "s1", 1000, 1000, 1100)))(t)
	e := must(st.AddEvent(ctx, store.Event{SourceID: src.ID, At: at(1), Level: "info", Kind: "k", Attrs: map[string]string{"a": "b"}}))(t)
	ok(t, st.Close())

	st = open(t)
	t.Cleanup(func() { st.Close() })
	same(t, "source", must(st.GetSource(ctx, "app"))(t), src)
	c.CursorLSN, c.CursorTime = g.EndLSN, g.LastCommitAt
	same(t, "chain", must(st.ListChains(ctx, src.ID))(t), []store.Chain{c})
	same(t, "segments", must(st.ListSegments(ctx, src.ID, 0))(t), []store.Segment{g})
	same(t, "events", must(st.ListEvents(ctx, store.EventFilter{}))(t), []store.Event{e})
	must(st.AddSegment(ctx, seg(c, "s2", 1100, 1100, 1200)))(t) // the chain goes on
	testSchemaVersion(t, st)
}
