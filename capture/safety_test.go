package capture_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/faultproxy"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/stream"
)

// newFixtureWith is newFixture with more keys for the source.
func newFixtureWith(t *testing.T, schema, extra string) *fixture {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, schema)
	e := capturetest.Setup(t, source, db, "segment_max_age = \"200ms\"\n"+extra)
	return &fixture{t: t, db: db, src: e.Source, meta: e.Meta, arts: e.Arts, id: e.SourceID, env: e}
}

// startWith starts a worker changed by setup.
func (f *fixture) startWith(setup func(w *capture.Worker)) *running {
	w := f.env.Worker(f.t)
	setup(w)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	f.t.Cleanup(func() { r.stop(f.t) })
	return r
}

// recorder keeps the events a worker notifies.
type recorder struct {
	mu   sync.Mutex
	list []string // "kind: message"
}

func (e *recorder) notify(_ context.Context, _ slog.Level, k kind.Kind, msg string) {
	e.mu.Lock()
	e.list = append(e.list, string(k)+": "+msg)
	e.mu.Unlock()
}

// wait returns the first event of kind, waiting up to 60s for it.
func (e *recorder) wait(t *testing.T, kind string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.list {
			if strings.HasPrefix(ev, kind+": ") {
				e.mu.Unlock()
				return ev
			}
		}
		list := append([]string(nil), e.list...)
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event within 60s; events: %q", kind, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus polls the worker's status until cond holds.
func waitStatus(t *testing.T, w *capture.Worker, what string, cond func(capture.Status) bool) capture.Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := w.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s; status %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// breakStorage makes the artifact store fail every write the way an
// unmounted or unwritable disk does: the source's directory becomes a
// file. The stored artifacts are kept aside; fix puts them back.
func (f *fixture) breakStorage() (fix func()) {
	f.t.Helper()
	dir := filepath.Join(f.arts.(*local.Store).Root(), f.src.Name)
	if err := os.Rename(dir, dir+".away"); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory\n"), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return func() {
		f.t.Helper()
		if err := os.Remove(dir); err != nil {
			f.t.Fatal(err)
		}
		if err := os.Rename(dir+".away", dir); err != nil {
			f.t.Fatal(err)
		}
	}
}

// restoreEquals restores the source to lsn into a fresh target database
// and compares table log with the source's (which must not have changed
// since lsn); it returns the plan.
func (f *fixture) restoreEquals(lsn stream.LSN) *restore.Plan {
	f.t.Helper()
	ctx := context.Background()
	var plan *restore.Plan
	var err error
	for deadline := time.Now().Add(60 * time.Second); ; {
		if plan, err = restore.MakePlan(ctx, f.meta, f.id, restore.Target{LSN: lsn}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no plan to %s: %v", lsn, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	db := target.CreateDB(f.t)
	if _, err := restore.Run(ctx, f.meta, f.arts, f.id, plan, restore.Options{TargetDSN: target.DSN(db)}); err != nil {
		f.t.Fatalf("restore to %s: %v", lsn, err)
	}
	const q = "SELECT count(*)::text || ' rows, ' || coalesce(md5(string_agg(id::text || ':' || v, ',' ORDER BY id)), '-') FROM log"
	want := pgtestValue(f.t, source.DSN(f.db), q)
	if got := pgtestValue(f.t, target.DSN(db), q); got != want {
		f.t.Fatalf("restored to %s from base %s: %s, the source holds %s", lsn, plan.Base.ArtifactKey, got, want)
	}
	return plan
}

func pgtestValue(t *testing.T, dsn, q string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(context.Background(), q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A capture that meets the same failure again with nothing stored in
// between is in state error, with the category, the position and the
// message, and stays so (never streaming) while retries go on; once the
// storage works again it streams and nothing is lost or doubled.
func TestStuckCaptureIsAnErrorUntilItProgresses(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	ev := &recorder{}
	r := f.startWith(func(w *capture.Worker) { w.Notify = ev.notify })
	chain := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('stored')")
	stuckAt := f.waitCaughtUp().CursorLSN

	fix := f.breakStorage()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('cannot be stored')")
	st := waitStatus(t, r.w, "state error", func(st capture.Status) bool { return st.State == "error" })
	if st.Error == nil || st.Error.Category != capture.CatStore || st.Error.LSN != stuckAt || st.Error.Attempts < 2 {
		t.Fatalf("error state: %+v (stuck at %s)", st.Error, stuckAt)
	}
	if want := "store failure at " + stuckAt.String(); !strings.Contains(st.LastError, want) || !strings.Contains(st.LastError, "not a directory") {
		t.Fatalf("last error %q lacks %q and the cause", st.LastError, want)
	}
	// The metadata store records it just after the in-memory status turns.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rec, err := f.meta.GetSource(context.Background(), "app")
		if err == nil && rec.State == "error" && strings.Contains(rec.LastError, "store failure") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded state %q %q %v", rec.State, rec.LastError, err)
		}
	}
	ev.wait(t, "capture.error")
	// Retries go on in the background; the state stays error.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := r.w.Status().State; s != "error" {
			t.Fatalf("state %s while capture cannot store anything", s)
		}
	}
	if n := r.w.Status().Errors[capture.CatStore]; n < 3 {
		t.Fatalf("%d store failures counted", n)
	}

	fix()
	waitStatus(t, r.w, "streaming after the fix", func(st capture.Status) bool { return st.State == "streaming" && st.Error == nil })
	ev.wait(t, "capture.recovered")
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after the fix')")
	f.waitCaughtUp()
	r.stop(t)
	f.checkExactlyOnce(chain.ID)
}

// A publication dropped under a running slot makes every attempt fail at
// the same place. That is a stuck capture (category publication), not a
// lost slot: the chain and the slot stay.
func TestMissingPublicationIsAnErrorNotALostSlot(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	r := f.start()
	chain := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('a')")
	f.waitCaughtUp()
	source.Exec(t, f.db, "DROP PUBLICATION "+f.src.Publication)
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('b')")
	st := waitStatus(t, r.w, "state error", func(st capture.Status) bool { return st.State == "error" })
	if st.Error.Category != capture.CatPublication || !strings.Contains(st.Error.Message, "does not exist") || st.Error.LSN == 0 {
		t.Fatalf("error %+v", st.Error)
	}
	chains, _ := f.meta.ListChains(context.Background(), f.id)
	if len(chains) != 1 || chains[0].ID != chain.ID || !chains[0].EndedAt.IsZero() {
		t.Fatalf("chains after a dropped publication: %+v", chains)
	}
	if n := pgtestValue(t, source.DSN(f.db), fmt.Sprintf("SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = '%s'", f.src.Slot)); n != "1" {
		t.Fatalf("%s slots", n)
	}
}

// WAL of one 1 kB row, a little more than its text.
const rowWAL = 1100

// The WAL guard: a capture that cannot store (so cannot acknowledge)
// while the source writes warns at 75% of max_retained_wal, drops the
// slot past it, ends the chain recording the gap, and once storage works
// a new chain starts with a base backup; a restore to a point of the new
// chain equals the source.
func TestWALGuardDropsTheSlotOfAStuckCapture(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", `max_retained_wal = "16MiB"`)
	ev := &recorder{}
	r := f.startWith(func(w *capture.Worker) { w.Notify = ev.notify })
	first := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('before')")
	f.waitCaughtUp()

	fix := f.breakStorage()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('cannot be stored')")
	waitStatus(t, r.w, "state error", func(st capture.Status) bool { return st.State == "error" })
	// About 13 MiB: past 75% of the budget, not past it.
	source.Exec(t, f.db, fmt.Sprintf("INSERT INTO log(v) SELECT repeat('w', 1000) FROM generate_series(1, %d)", 13<<20/rowWAL))
	warning := ev.wait(t, "slot.wal_warning")
	if !strings.Contains(warning, "max_retained_wal "+human.Bytes(16<<20)) {
		t.Fatalf("warning %q", warning)
	}
	if chains, _ := f.meta.ListChains(context.Background(), f.id); !chains[0].EndedAt.IsZero() {
		t.Fatalf("chain ended below the budget: %+v", chains[0])
	}
	source.Exec(t, f.db, fmt.Sprintf("INSERT INTO log(v) SELECT repeat('w', 1000) FROM generate_series(1, %d)", 8<<20/rowWAL))
	dropped := ev.wait(t, "slot.dropped")
	chains, err := f.meta.ListChains(context.Background(), f.id)
	if err != nil {
		t.Fatal(err)
	}
	if chains[0].ID != first.ID || chains[0].EndedAt.IsZero() || !strings.Contains(chains[0].EndReason, "over max_retained_wal "+human.Bytes(16<<20)) ||
		!strings.Contains(chains[0].EndReason, "capture stuck: store failure") {
		t.Fatalf("first chain %+v after %q", chains[0], dropped)
	}
	fix()
	second := f.openChain()
	if second.ID == first.ID {
		t.Fatal("no new chain")
	}
	waitStatus(t, r.w, "streaming on the new chain", func(st capture.Status) bool { return st.State == "streaming" && st.ChainID == second.ID })
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after'); UPDATE log SET v = 'changed' WHERE id % 1000 = 7")
	lsn := source.CurrentLSN(t)
	f.waitCaughtUp()
	plan := f.restoreEquals(lsn)
	if plan.Base.ChainID != second.ID {
		t.Fatalf("restored from chain %d, want the new chain %d", plan.Base.ChainID, second.ID)
	}
}

// The guard covers a btfu that was stopped: at start it reports how much
// WAL the slot held meanwhile and, past the budget, drops it before
// streaming anything, and starts over with a new base backup.
func TestWALGuardAtStartDropsASlotThatHeldTooMuch(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", `max_retained_wal = "16MiB"`)
	r := f.start()
	first := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('before')")
	cursor := f.waitCaughtUp().CursorLSN
	r.stop(t)

	source.Exec(t, f.db, fmt.Sprintf("INSERT INTO log(v) SELECT repeat('w', 1000) FROM generate_series(1, %d)", 24<<20/rowWAL))
	ev := &recorder{}
	f.startWith(func(w *capture.Worker) { w.Notify = ev.notify })
	if at := ev.wait(t, "slot.wal_at_start"); !strings.Contains(at, "while capture was stopped") || !strings.Contains(at, "MiB of WAL") {
		t.Fatalf("start report %q", at)
	}
	ev.wait(t, "slot.dropped")
	second := f.openChain()
	chains, _ := f.meta.ListChains(context.Background(), f.id)
	if chains[0].ID != first.ID || !strings.Contains(chains[0].EndReason, "while btfu was stopped") {
		t.Fatalf("first chain %+v", chains[0])
	}
	if chains[0].CursorLSN != cursor {
		t.Fatalf("the chain streamed (cursor %s, was %s) before its slot was dropped", chains[0].CursorLSN, cursor)
	}
	if second.ID == first.ID {
		t.Fatal("no new chain")
	}
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after')")
	lsn := source.CurrentLSN(t)
	f.waitCaughtUp()
	f.restoreEquals(lsn)
}

// proxied points the fixture's source at a fault proxy in front of the
// test server (registration already ran directly).
func (f *fixture) proxied() *faultproxy.Proxy {
	f.t.Helper()
	p, err := faultproxy.Start(fmt.Sprintf("%s:%d", source.Host, source.Port))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(p.Close)
	f.src.DSN = strings.Replace(f.src.DSN, fmt.Sprintf(":%d/", source.Port), fmt.Sprintf(":%d/", p.Port()), 1)
	return p
}

// waitStored waits until the stored cursor reaches lsn and returns how
// long that took.
func (f *fixture) waitStored(lsn stream.LSN, within time.Duration) time.Duration {
	f.t.Helper()
	start := time.Now()
	for {
		if ch := f.openChain(); ch.CursorLSN >= lsn {
			return time.Since(start)
		}
		if time.Since(start) > within {
			f.t.Fatalf("stored cursor did not reach %s within %s", lsn, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A connection that stops carrying anything without closing (a dropped
// route) is noticed within the silence timeout after a reply was asked
// for; the worker reconnects, and coverage passes a new commit soon after
// the path works again.
func TestSilentConnectionIsNoticed(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	p := f.proxied()
	const silence = 2 * time.Second
	r := f.startWith(func(w *capture.Worker) { w.SilenceTimeout = silence })
	f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('a')")
	f.waitCaughtUp()

	p.Freeze()
	frozen := time.Now()
	st := waitStatus(t, r.w, "silence noticed", func(st capture.Status) bool {
		return strings.Contains(st.LastError, "no message from the server for 2s after a reply was requested")
	})
	// The bound: the timeout, one status interval (100ms) before the
	// first unanswered request, and a margin for a loaded machine.
	if took := time.Since(frozen); took > silence+2*time.Second {
		t.Fatalf("silence noticed after %s, bound %s", took, silence+2*time.Second)
	}
	if st.State != "reconnecting" {
		t.Fatalf("state %s after a silent connection", st.State)
	}
	p.Thaw()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after the silence')")
	took := f.waitStored(source.CurrentLSN(t), 10*time.Second)
	t.Logf("silence noticed; coverage passed a new commit %s after the path came back", took.Round(10*time.Millisecond))
}

// A route that dies under an open connection (nothing closes it) leaves
// the server's walsender holding the slot until wal_sender_timeout
// (60s). btfu notices the silence, and since that walsender is its own it
// ends it, so capture resumes at once on a new connection.
func TestSilentCutResumesWithoutWaitingForTheServerTimeout(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	p := f.proxied()
	const silence = 2 * time.Second
	f.startWith(func(w *capture.Worker) {
		w.SilenceTimeout = silence
		w.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	})
	f.openChain()
	// Stored through the stream: the route dies under a live replication
	// connection. (Caught up at the base backup's own position, the worker
	// could still be connecting, and a connection stalled before its
	// startup waits for the 10s connect timeout: another case.)
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('streamed')")
	f.waitCaughtUp()
	p.Stall()
	stalled := time.Now()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('while the old route is dead')")
	// The silence timeout, then a reconnect: well under the 60s the
	// server would take to let go of the slot by itself.
	f.waitStored(source.CurrentLSN(t), 15*time.Second)
	t.Logf("coverage passed a commit made as the route died %s later (silence timeout %s)", time.Since(stalled).Round(10*time.Millisecond), silence)
}

// Reconnecting is quick however many cuts came before: the backoff
// starts again from its minimum once capture progresses. After several
// cuts, coverage passes a commit made after a 3 s cut within 5 s of the
// cut ending (the worker's default backoff).
func TestReconnectIsQuickAfterManyCuts(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	p := f.proxied()
	f.startWith(func(w *capture.Worker) { w.MinBackoff, w.MaxBackoff = 0, 0 }) // the defaults
	f.openChain()
	f.waitCaughtUp()
	cut := func(d time.Duration) time.Time {
		p.Cut()
		time.Sleep(d)
		p.Restore()
		return time.Now()
	}
	for i := range 5 {
		cut(time.Duration(500+300*i) * time.Millisecond)
		source.Exec(t, f.db, fmt.Sprintf("INSERT INTO log(v) VALUES ('after cut %d')", i+1))
		f.waitStored(source.CurrentLSN(t), 60*time.Second)
	}
	ended := cut(3 * time.Second)
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after the 3s cut')")
	lsn := source.CurrentLSN(t)
	f.waitStored(lsn, 5*time.Second-time.Since(ended))
	t.Logf("coverage passed a commit made after a 3s cut %s after the cut ended", time.Since(ended).Round(10*time.Millisecond))
}

// A first base backup interrupted after it created the slot and before it
// recorded its chain (kill -9 while reading the catalog) leaves a slot no
// chain uses. The next start drops it and takes the first base backup
// again, instead of failing with "already exists" for ever; the restore
// of what follows equals the source.
func TestSlotOfAnInterruptedFirstBaseBackupIsDropped(t *testing.T) {
	f := newFixtureWith(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)", "")
	source.Exec(t, f.db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", f.src.Slot))
	r := f.startWith(func(w *capture.Worker) {})
	waitStatus(t, r.w, "streaming", func(s capture.Status) bool { return s.State == "streaming" })
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after the restart')")
	f.restoreEquals(source.CurrentLSN(t))
}

// heldStore holds every segment Put, once armed, until released; other
// artifacts (base backups) pass. With failFirst, the first Put held then
// fails.
type heldStore struct {
	artifact.Store
	armed     atomic.Bool
	held      atomic.Int32
	release   chan struct{}
	failFirst atomic.Bool
}

func (h *heldStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if h.armed.Load() && strings.Contains(key, "/segments/") {
		n := h.held.Add(1)
		select {
		case <-h.release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if n == 1 && h.failFirst.Load() {
			return 0, fmt.Errorf("the store failed (test)")
		}
	}
	return h.Store.Put(ctx, key, r)
}

// hold arms h, commits a row with value v and waits until the segment
// holding it is being stored (held).
func (h *heldStore) hold(t *testing.T, db, v string) {
	t.Helper()
	h.armed.Store(true)
	source.Exec(t, db, fmt.Sprintf("INSERT INTO log(v) VALUES ('%s')", v))
	for deadline := time.Now().Add(30 * time.Second); h.held.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no segment upload started within 30s")
		}
	}
}

// While a segment is being stored, the next one is written: transactions
// go on being received and written; the cursor (and the slot's
// acknowledgement) does not move past the segment being stored, whatever
// the server's keepalives say; once it is stored, everything is, exactly
// once.
func TestNextSegmentIsWrittenWhileTheLastIsStored(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	h := &heldStore{Store: f.arts, release: make(chan struct{})}
	r := f.startWith(func(w *capture.Worker) { w.Artifacts = h })
	chain := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('before')")
	cursor := f.waitCaughtUp().CursorLSN

	h.hold(t, f.db, "held")
	before := r.w.Status().Transactions
	for i := range 3 {
		source.Exec(t, f.db, fmt.Sprintf("INSERT INTO log(v) VALUES ('while held %d')", i))
	}
	waitStatus(t, r.w, "transactions written while a segment is stored", func(st capture.Status) bool { return st.Transactions >= before+3 })
	time.Sleep(1500 * time.Millisecond) // keepalives and idle marks arrive meanwhile
	if c := f.openChain().CursorLSN; c != cursor {
		t.Fatalf("the cursor moved from %s to %s while the segment after it was still being stored", cursor, c)
	}
	confirmed := pgtest.QueryValue[string](t, source, f.db, fmt.Sprintf("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'", f.src.Slot))
	if lsn, _ := pglogrepl.ParseLSN(confirmed); lsn > cursor {
		t.Fatalf("the slot was acknowledged to %s, past the stored cursor %s", confirmed, cursor)
	}

	close(h.release)
	f.waitCaughtUp()
	r.stop(t)
	f.checkExactlyOnce(chain.ID)
}

// When a segment fails to be stored, the segments written after it are
// not recorded (the chain would have a gap; the uploader stops, and the
// metadata store refuses a segment out of chain order anyway): capture
// reconnects from the cursor before the failed one and stores everything
// again, exactly once, without a gap.
func TestSegmentsAfterAFailedOneAreNotRecorded(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	h := &heldStore{Store: f.arts, release: make(chan struct{})}
	h.failFirst.Store(true)
	r := f.startWith(func(w *capture.Worker) { w.Artifacts = h })
	chain := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('before')")
	f.waitCaughtUp()

	h.hold(t, f.db, "fails to be stored")
	before := r.w.Status().Transactions
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('written behind it')")
	waitStatus(t, r.w, "a transaction written behind the held segment", func(st capture.Status) bool { return st.Transactions > before })
	time.Sleep(500 * time.Millisecond) // its segment is sealed (segment_max_age 200ms)
	close(h.release)
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('after')")
	f.waitCaughtUp()
	r.stop(t)
	f.checkExactlyOnce(chain.ID)
	segs, err := f.meta.ListSegments(context.Background(), f.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].ChainID == segs[i-1].ChainID && segs[i].PrevEndLSN != segs[i-1].EndLSN {
			t.Fatalf("segment %s follows %s, which ends at %s: a gap", segs[i].ArtifactKey, segs[i-1].ArtifactKey, segs[i-1].EndLSN)
		}
	}
}
