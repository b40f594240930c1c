package capture_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

var source, target *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source, &target)) }

type fixture struct {
	t    *testing.T
	db   string
	src  *config.Source
	meta store.Store
	arts artifact.Store
	id   int64
	env  *capturetest.Env
}

func newFixture(t *testing.T, schema string) *fixture {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, schema)
	e := capturetest.Setup(t, source, db, `segment_max_age = "200ms"`)
	return &fixture{t: t, db: db, src: e.Source, meta: e.Meta, arts: e.Arts, id: e.SourceID, env: e}
}

type running struct {
	w      *capture.Worker
	cancel context.CancelFunc
	done   chan error
}

func (f *fixture) start() *running {
	w := f.env.Worker(f.t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	f.t.Cleanup(func() { r.stop(f.t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("worker: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop within 20s")
	}
}

// openChain returns the source's open chain once its first base backup
// is stored.
func (f *fixture) openChain() store.Chain {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		chains, err := f.meta.ListChains(context.Background(), f.id)
		if err != nil {
			f.t.Fatal(err)
		}
		// A chain is recorded before its first base backup is stored; a
		// worker stopped before then ends it, rightly.
		bases, err := f.meta.ListBaseBackups(context.Background(), f.id)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, c := range chains {
			for _, b := range bases {
				if c.EndedAt.IsZero() && b.ChainID == c.ID && b.Status == store.BackupComplete {
					return c
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatal("no open chain with a stored base backup within 60s")
	return store.Chain{}
}

// waitCaughtUp waits until the open chain's durable cursor reaches the
// source's current WAL position.
func (f *fixture) waitCaughtUp() store.Chain {
	f.t.Helper()
	want := source.CurrentLSN(f.t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ch := f.openChain()
		if ch.CursorLSN >= want {
			return ch
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("cursor %s did not reach %s within 60s", ch.CursorLSN, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedInserts reads every segment (verifying checksums) and returns the
// first column of every insert into table, with (commit LSN, ordinal)
// keys checked unique.
func (f *fixture) storedInserts(table string) []int {
	f.t.Helper()
	ctx := context.Background()
	segs, err := f.meta.ListSegments(ctx, f.id, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []int
	seen := map[string]bool{}
	for _, s := range segs {
		rc, err := f.arts.Get(ctx, s.ArtifactKey)
		if err != nil {
			f.t.Fatal(err)
		}
		h := sha256.New()
		r, err := segment.NewReader(io.TeeReader(rc, h))
		if err != nil {
			f.t.Fatal(err)
		}
		var commit segment.LSN
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.t.Fatalf("segment %s: %v", s.ArtifactKey, err)
			}
			switch rec.T {
			case segment.TypeBegin:
				commit = rec.LSN()
			case segment.TypeInsert:
				if rel := r.Relation(rec.RelOID); rel.Name == table {
					key := fmt.Sprintf("%s/%d", commit, rec.Ordinal)
					if seen[key] {
						f.t.Fatalf("change %s stored twice", key)
					}
					seen[key] = true
					id, _ := strconv.Atoi(rec.New[0].Text)
					ids = append(ids, id)
				}
			}
		}
		io.Copy(h, rc)
		rc.Close()
		r.Close()
		if hex.EncodeToString(h.Sum(nil)) != s.SHA256 {
			f.t.Fatalf("segment %s checksum mismatch", s.ArtifactKey)
		}
	}
	return ids
}

// dumpedIDs restores the chain's first base backup into a fresh target
// database and returns the ids in table.
func (f *fixture) dumpedIDs(chainID int64, table string) []int {
	f.t.Helper()
	ctx := context.Background()
	bases, err := f.meta.ListBaseBackups(ctx, f.id)
	if err != nil {
		f.t.Fatal(err)
	}
	var key string
	for deadline := time.Now().Add(60 * time.Second); key == "" && time.Now().Before(deadline); {
		for _, b := range bases {
			if b.ChainID == chainID && b.Status == store.BackupComplete {
				key = b.ArtifactKey
				break
			}
		}
		if key == "" {
			time.Sleep(50 * time.Millisecond)
			if bases, err = f.meta.ListBaseBackups(ctx, f.id); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	if key == "" {
		f.t.Fatal("no complete base backup within 60s")
	}
	rc, err := f.arts.Get(ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rc.Close()
	db := target.CreateDB(f.t)
	prog, err := pgbin.Find(ctx, "pg_restore", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(prog.Path, "--no-owner", "-d", target.DSN(db))
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	return ids(f.t, target, db, "SELECT id FROM "+table)
}

func ids(t *testing.T, c *pgtest.Cluster, db, query string) []int {
	t.Helper()
	conn := c.Connect(t, db)
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// workload inserts single-row transactions into log until stopped.
func workload(t *testing.T, db string) (stop func() int) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), source.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close(context.Background())
		for {
			select {
			case <-quit:
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), "INSERT INTO log(v) VALUES ('x')"); err != nil {
				// The source may be restarting; reconnect.
				time.Sleep(50 * time.Millisecond)
				if c, err := pgx.Connect(context.Background(), source.DSN(db)); err == nil {
					conn.Close(context.Background())
					conn = c
				}
				continue
			}
			n.Add(1)
		}
	}()
	return func() int { close(quit); wg.Wait(); return int(n.Load()) }
}

// checkExactlyOnce compares the source's rows with the union of the base
// backup and the stored segments: every committed row once, nothing else.
func (f *fixture) checkExactlyOnce(chainID int64) {
	f.t.Helper()
	want := ids(f.t, source, f.db, "SELECT id FROM log")
	inDump := f.dumpedIDs(chainID, "log")
	inSegs := f.storedInserts("log")
	got := append(append([]int{}, inDump...), inSegs...)
	sort.Ints(got)
	sort.Ints(want)
	if len(got) != len(want) {
		f.t.Fatalf("source has %d rows; dump %d + segments %d = %d", len(want), len(inDump), len(inSegs), len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			f.t.Fatalf("row %d: source id %d, stored id %d (duplicate or loss)", i, want[i], got[i])
		}
	}
	if len(inDump) == 0 || len(inSegs) == 0 {
		f.t.Logf("dump %d rows, segments %d rows", len(inDump), len(inSegs))
	}
}

func TestEveryCommittedTransactionStoredExactlyOnceAcrossTheBaseBackup(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text); INSERT INTO log(v) SELECT 'before' FROM generate_series(1, 1000)")
	stop := workload(t, f.db) // runs before, during and after the first base backup
	r := f.start()
	chain := f.openChain()
	time.Sleep(time.Second)
	n := stop()
	f.waitCaughtUp()
	r.stop(t)
	if n == 0 {
		t.Fatal("workload committed nothing")
	}
	f.checkExactlyOnce(chain.ID)
	segs, _ := f.meta.ListSegments(context.Background(), f.id, 0)
	if len(segs) < 2 {
		t.Fatalf("expected several segments rotated by time, got %d", len(segs))
	}
	// The slot was acknowledged up to the stored cursor.
	ch := f.openChain()
	confirmed := pgtest.QueryValue[string](t, source, f.db, fmt.Sprintf("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'", f.src.Slot))
	if confirmed != ch.CursorLSN.String() {
		t.Fatalf("slot confirmed %s, durable cursor %s", confirmed, ch.CursorLSN)
	}
}

func TestRestartResumesWithoutGapOrDuplicate(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	r := f.start()
	chain := f.openChain()
	stop := workload(t, f.db)
	time.Sleep(500 * time.Millisecond)
	r.stop(t) // the workload goes on while btfu is down
	time.Sleep(300 * time.Millisecond)
	r = f.start()
	time.Sleep(500 * time.Millisecond)
	stop()
	f.waitCaughtUp()
	r.stop(t)
	if c := f.openChain(); c.ID != chain.ID {
		t.Fatalf("restart started a new chain %d (was %d)", c.ID, chain.ID)
	}
	f.checkExactlyOnce(chain.ID)
}

func TestSourceRestartUnderLoad(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	r := f.start()
	chain := f.openChain()
	stop := workload(t, f.db)
	time.Sleep(500 * time.Millisecond)
	if err := source.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop()
	f.waitCaughtUp()
	r.stop(t)
	f.checkExactlyOnce(chain.ID)
}

func TestIdleSourceCoverageKeepsAdvancing(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	f.start()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('one')")
	first := f.waitCaughtUp()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ch := f.openChain()
		if ch.CursorTime.After(first.CursorTime.Add(time.Second)) {
			if time.Since(ch.CursorTime) > 5*time.Second {
				t.Fatalf("cursor time %s lags far behind now", ch.CursorTime)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor time stuck at %s on an idle source", ch.CursorTime)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestLostSlotEndsTheChainAndStartsAnother(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	r := f.start()
	first := f.openChain()
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('a')")
	f.waitCaughtUp()
	r.stop(t)
	source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", f.src.Slot))
	source.Exec(t, f.db, "INSERT INTO log(v) VALUES ('lost while the slot was gone')")
	f.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		chains, _ := f.meta.ListChains(context.Background(), f.id)
		if len(chains) == 2 && !chains[0].EndedAt.IsZero() && strings.Contains(chains[0].EndReason, "slot") && chains[1].EndedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chains: %+v", chains)
		}
		time.Sleep(100 * time.Millisecond)
	}
	second := f.openChain()
	if second.ID == first.ID {
		t.Fatal("same chain")
	}
	// The new chain's base backup holds the row written during the gap.
	got := f.dumpedIDs(second.ID, "log")
	if len(got) != 2 {
		t.Fatalf("new base backup has %d rows, want 2", len(got))
	}
}

// A transaction of 1,000,000 rows is spooled while it arrives (bounded
// memory) and stored whole, once.
func TestMillionRowTransaction(t *testing.T) {
	f := newFixture(t, "CREATE TABLE log(id int PRIMARY KEY, v text)")
	r := f.start()
	chain := f.openChain()
	f.waitCaughtUp()
	source.Exec(t, f.db, "INSERT INTO log SELECT g, 'row' FROM generate_series(1, 1000000) g")
	f.waitCaughtUp()
	r.stop(t)
	segs, _ := f.meta.ListSegments(context.Background(), f.id, 0)
	var changes int64
	for _, s := range segs {
		if s.ChainID == chain.ID {
			changes += s.ChangeCount
		}
	}
	if changes != 1000000 {
		t.Fatalf("segments hold %d changes, want 1000000", changes)
	}
	got := f.storedInserts("log")
	if len(got) != 1000000 {
		t.Fatalf("%d inserts read back", len(got))
	}
	sort.Ints(got)
	for i, id := range got {
		if id != i+1 {
			t.Fatalf("insert %d has id %d", i, id)
		}
	}
}

// Two btfu instances (different configs) with a source of the same name
// share the default spool location, the system temporary directory. The
// second one's start must not remove the first one's spool directory as
// left by a crash; and a spool directory removed anyway (a temporary-file
// cleaner) is made again instead of failing every retry.
func TestSpoolDirectoryOfARunningWorkerSurvives(t *testing.T) {
	shared := t.TempDir()
	f := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	w := f.env.Worker(t)
	w.SpoolDir = shared
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	r := &running{w: w, cancel: cancel, done: done}
	t.Cleanup(func() { r.stop(t) })
	chain := f.openChain()
	stop := workload(t, f.db)
	mine, _ := filepath.Glob(filepath.Join(shared, "btfu-app-*"))
	if len(mine) != 1 {
		t.Fatalf("spool directories: %v", mine)
	}

	// Another instance starts with its own source called app.
	other := newFixture(t, "CREATE TABLE log(id serial PRIMARY KEY, v text)")
	os.Mkdir(filepath.Join(shared, "btfu-app-left-by-a-crash"), 0o700)
	ow := other.env.Worker(t)
	ow.SpoolDir = shared
	octx, ocancel := context.WithCancel(context.Background())
	odone := make(chan error, 1)
	go func() { odone <- ow.Run(octx) }()
	other.openChain()
	(&running{w: ow, cancel: ocancel, done: odone}).stop(t)
	if _, err := os.Stat(mine[0]); err != nil {
		t.Fatalf("the other instance removed the running worker's spool directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(shared, "btfu-app-left-by-a-crash")); !os.IsNotExist(err) {
		t.Fatalf("a spool directory no worker holds was kept: %v", err)
	}

	// Removed under the running worker: capture goes on.
	time.Sleep(300 * time.Millisecond)
	os.RemoveAll(mine[0])
	time.Sleep(1500 * time.Millisecond)
	if n := stop(); n == 0 {
		t.Fatal("workload committed nothing")
	}
	f.waitCaughtUp()
	r.stop(t)
	f.checkExactlyOnce(chain.ID)
}
