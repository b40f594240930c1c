package compact_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/compact"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/sqlite"
)

var source, target *pgtest.Cluster

// childEnv makes the test binary a compaction process a test kills: it
// holds "metadata path|artifact dir|source id|step".
const childEnv = "BTFU_TEST_COMPACT_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(v))
	}
	os.Exit(pgtest.Main(m, &source, &target))
}

// later is a "now" at which every segment a test wrote is ripe.
func later() time.Time { return time.Now().Add(3 * time.Hour) }

var ripe = compact.Options{After: time.Hour}

// child compacts and, at the named step, says so and waits to be killed.
func child(v string) int {
	p := strings.Split(v, "|")
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, p[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	arts, err := local.New(p[1])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	var id int64
	fmt.Sscan(p[2], &id)
	o := ripe
	o.Grace = -1
	o = compact.WithStep(o, func(name string) {
		if name == p[3] {
			fmt.Println("at", name)
			time.Sleep(time.Hour)
		}
	})
	if _, err := compact.Apply(ctx, meta, arts, store.Source{ID: id, Name: "app"}, o, later(), nil); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("finished without reaching", p[3])
	return 1
}

var tables = []string{"items", "tags", "toasty"}

type mark struct {
	lsn  pglogrepl.LSN
	hash map[string]string
}

func hashes(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	out := map[string]string{}
	for _, tbl := range tables {
		out[tbl] = pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", tbl))
	}
	return out
}

// history captures a workload of many small segments and returns the
// stores and the source's content at several points.
func history(t *testing.T) (*capturetest.Env, []mark) {
	t.Helper()
	return historyIn(t, nil)
}

// historyIn is history with the artifact store wrapped by wrap (nil: as
// it is).
func historyIn(t *testing.T, wrap func(artifact.Store) artifact.Store) (*capturetest.Env, []mark) {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE items(id serial PRIMARY KEY, name text, qty int);
		CREATE TABLE tags(a int, b text); ALTER TABLE tags REPLICA IDENTITY FULL;
		CREATE TABLE toasty(id int PRIMARY KEY, big text, n int)`)
	ce := capturetest.Setup(t, source, db, `segment_max_age = "100ms"`)
	if wrap != nil {
		ce.Arts = wrap(ce.Arts)
	}
	w := ce.Worker(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(60 * time.Second); w.Status().State != "streaming"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not streaming")
		}
	}
	big := "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)"
	steps := []string{
		"INSERT INTO items(name, qty) SELECT 'i' || g, g FROM generate_series(1, 50) g; INSERT INTO toasty VALUES (1, " + big + ", 0), (2, NULL, 0); INSERT INTO tags VALUES (1, 'x'), (1, 'x'), (2, NULL)",
		"UPDATE items SET qty = qty * 10 WHERE id % 3 = 0; DELETE FROM items WHERE id % 7 = 0; UPDATE toasty SET n = n + 1",
		"UPDATE tags SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM tags WHERE a = 1)",
		"TRUNCATE items RESTART IDENTITY; INSERT INTO items(name, qty) VALUES ('after truncate', 5)",
		"ALTER TABLE items ADD COLUMN note text; INSERT INTO items(name, qty, note) VALUES ('noted', 1, 'hello')",
		"UPDATE items SET note = 'changed' WHERE note IS NOT NULL; DELETE FROM tags WHERE a = 2",
	}
	var marks []mark
	for _, s := range steps {
		// Several transactions per step, apart: several segments each.
		for i := 0; i < 3; i++ {
			source.Exec(t, db, fmt.Sprintf("INSERT INTO items(name, qty) VALUES ('pad', %d)", i))
			time.Sleep(150 * time.Millisecond)
		}
		source.Exec(t, db, s)
		time.Sleep(150 * time.Millisecond)
		marks = append(marks, mark{lsn: source.CurrentLSN(t), hash: hashes(t, source, db)})
	}
	last := marks[len(marks)-1].lsn
	source.Exec(t, db, "SELECT pg_logical_emit_message(true, 'btfu.test.nudge', '')")
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		chains, _ := ce.Meta.ListChains(context.Background(), ce.SourceID)
		if len(chains) == 1 && chains[0].CursorLSN >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stored up to %s", last)
		}
	}
	return ce, marks
}

// restoresEqual restores to every mark and compares with the source.
func restoresEqual(t *testing.T, meta store.Store, arts artifact.Store, id int64, marks []mark) {
	t.Helper()
	ctx := context.Background()
	for i, m := range marks {
		plan, err := restore.MakePlan(ctx, meta, id, restore.Target{LSN: m.lsn})
		if err != nil {
			t.Fatalf("mark %d: %v", i, err)
		}
		db := target.CreateDB(t)
		if _, err := restore.Run(ctx, meta, arts, id, plan, restore.Options{TargetDSN: target.DSN(db)}); err != nil {
			t.Fatalf("restore to mark %d (%s): %v", i, m.lsn, err)
		}
		got := hashes(t, target, db)
		for _, tbl := range tables {
			if got[tbl] != m.hash[tbl] {
				t.Errorf("mark %d (%s): table %s differs from the source", i, m.lsn, tbl)
			}
		}
	}
}

func segments(t *testing.T, meta store.Store, id int64) []store.Segment {
	t.Helper()
	segs, err := meta.ListSegments(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// objects lists the keys under the segments of source "app".
func objects(t *testing.T, arts artifact.Store) []string {
	t.Helper()
	list, err := arts.List(context.Background(), "app/segments/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range list {
		out = append(out, o.Key)
	}
	return out
}

// Compaction turns many small segments into one per hour, and a restore to
// any point gives what the source held there, before and after the small
// objects are swept.
func TestCompactedChainRestoresTheSame(t *testing.T) {
	ce, marks := history(t)
	before := segments(t, ce.Meta, ce.SourceID)
	if len(before) < 10 {
		t.Fatalf("only %d segments: the workload should make many", len(before))
	}
	src := store.Source{ID: ce.SourceID, Name: "app"}
	// Nothing is ripe yet: an hour that has not ended is never merged.
	if rep, err := compact.Apply(context.Background(), ce.Meta, ce.Arts, src, ripe, time.Now(), nil); err != nil || rep.Merged != 0 {
		t.Fatalf("compaction of fresh segments: %+v, %v", rep, err)
	}
	rep, err := compact.Apply(context.Background(), ce.Meta, ce.Arts, src, ripe, later(), nil)
	if err != nil || len(rep.Skipped) > 0 {
		t.Fatalf("compaction: %+v, %v", rep, err)
	}
	after := segments(t, ce.Meta, ce.SourceID)
	hours := map[time.Time]bool{}
	for _, s := range before {
		hours[s.FirstCommitAt.UTC().Truncate(time.Hour)] = true
	}
	if len(after) != len(hours) || rep.Replaced != len(before) || rep.Swept != 0 {
		t.Fatalf("%d segments in %d hours became %d (report %+v)", len(before), len(hours), len(after), rep)
	}
	// Within the grace, the small objects are still there for restores
	// planned before the switch.
	if n := len(objects(t, ce.Arts)); n != len(before)+len(after) {
		t.Errorf("%d objects after compaction, want the %d small ones and %d merged", n, len(before), len(after))
	}
	restoresEqual(t, ce.Meta, ce.Arts, ce.SourceID, marks)

	// After it, they go; what the records name stays.
	n, _, err := compact.Sweep(context.Background(), ce.Meta, ce.Arts, src, compact.Options{Grace: -1}, time.Now(), nil)
	if err != nil || n != len(before) {
		t.Fatalf("sweep deleted %d, want %d: %v", n, len(before), err)
	}
	if got := objects(t, ce.Arts); len(got) != len(after) || got[0] != after[0].ArtifactKey {
		t.Errorf("objects after the sweep: %v", got)
	}
	restoresEqual(t, ce.Meta, ce.Arts, ce.SourceID, marks)
	if rep, err := compact.Apply(context.Background(), ce.Meta, ce.Arts, src, ripe, later(), nil); err != nil || rep.Merged != 0 {
		t.Errorf("a second compaction: %+v, %v", rep, err)
	}
}

// A corrupt small segment is never copied into a merged object: its group
// stays as it was and says why.
func TestCorruptSegmentIsNotMerged(t *testing.T) {
	ce, _ := history(t)
	segs := segments(t, ce.Meta, ce.SourceID)
	root := filepath.Join(ce.Arts.(*local.Store).Root(), filepath.FromSlash(segs[1].ArtifactKey))
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(root, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := compact.Apply(context.Background(), ce.Meta, ce.Arts, store.Source{ID: ce.SourceID, Name: "app"}, ripe, later(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Skipped) == 0 || !strings.Contains(strings.Join(rep.Skipped, " "), segs[1].ArtifactKey) {
		t.Fatalf("report %+v does not name the corrupt segment", rep)
	}
	for _, s := range segments(t, ce.Meta, ce.SourceID) {
		if s.ArtifactKey == segs[1].ArtifactKey {
			return
		}
	}
	t.Error("the corrupt segment's group was replaced")
}

// btfu killed (SIGKILL) at each step of a compaction leaves a chain that
// restores to every point; the next run finishes the work and leaves no
// object behind that nothing references.
func TestKillNineAtEachStepOfCompaction(t *testing.T) {
	ce, marks := history(t)
	small := len(segments(t, ce.Meta, ce.SourceID))
	metaPath := ce.MetaPath
	ce.Meta.Close()
	for _, step := range []string{"stored", "verified", "switched", "deleted"} {
		t.Run(step, func(t *testing.T) {
			// Each kill on its own copy of the stores.
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-a", metaPath, filepath.Join(dir, "btfu.db")).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if out, err := exec.Command("cp", "-a", ce.Arts.(*local.Store).Root(), filepath.Join(dir, "data")).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d|%s", childEnv, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), ce.SourceID, step))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			if strings.TrimSpace(line) != "at "+step {
				t.Fatalf("compaction process said %q", line)
			}

			ctx := context.Background()
			meta, err := sqlite.Open(ctx, filepath.Join(dir, "btfu.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer meta.Close()
			arts, err := local.New(filepath.Join(dir, "data"))
			if err != nil {
				t.Fatal(err)
			}
			restoresEqual(t, meta, arts, ce.SourceID, marks[len(marks)-1:])

			rep, err := compact.Apply(ctx, meta, arts, store.Source{ID: ce.SourceID, Name: "app"}, compact.Options{After: time.Hour, Grace: -1}, later(), nil)
			if err != nil || len(rep.Skipped) > 0 {
				t.Fatalf("compaction after the kill: %+v, %v", rep, err)
			}
			segs := segments(t, meta, ce.SourceID)
			if len(segs) >= small {
				t.Errorf("%d segments after the kill and a new run, %d before compaction", len(segs), small)
			}
			var keys []string
			for _, s := range segs {
				keys = append(keys, s.ArtifactKey)
			}
			if got := objects(t, arts); strings.Join(got, " ") != strings.Join(keys, " ") {
				t.Errorf("objects %v, records %v: something is left over", got, keys)
			}
			restoresEqual(t, meta, arts, ce.SourceID, marks)
		})
	}
}

// Encrypted segments are merged into an encrypted object (to the
// recipients configured now) when btfu has the identity; without it,
// compaction says it cannot decrypt and changes nothing.
func TestEncryptedSegmentsAreMergedEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := agecrypt.ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(ids ...age.Identity) agecrypt.Options {
		return agecrypt.Options{
			Recipients:   func(string) []agecrypt.Recipient { return []agecrypt.Recipient{rcpt} },
			Identities:   func() ([]age.Identity, error) { return ids, nil },
			IdentityHint: "give the identity",
		}
	}
	var layer *agecrypt.Store
	ce, marks := historyIn(t, func(a artifact.Store) artifact.Store {
		layer = agecrypt.New(a, withKey(id))
		return layer
	})
	src := store.Source{ID: ce.SourceID, Name: "app"}
	small := len(segments(t, ce.Meta, ce.SourceID))

	layer.SetOptions(withKey())
	_, err = compact.Apply(context.Background(), ce.Meta, ce.Arts, src, ripe, later(), nil)
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("compaction without the identity: %v", err)
	}
	if n := len(segments(t, ce.Meta, ce.SourceID)); n != small {
		t.Fatalf("%d segments became %d without the identity", small, n)
	}

	layer.SetOptions(withKey(id))
	if rep, err := compact.Apply(context.Background(), ce.Meta, ce.Arts, src, ripe, later(), nil); err != nil || rep.Merged == 0 {
		t.Fatalf("compaction with the identity: %+v, %v", rep, err)
	}
	for _, s := range segments(t, ce.Meta, ce.SourceID) {
		rc, err := artifact.Stored(ce.Arts).Get(context.Background(), s.ArtifactKey)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, len(agecrypt.Magic))
		_, err = io.ReadFull(rc, head)
		rc.Close()
		if err != nil || !agecrypt.Encrypted(head) {
			t.Errorf("merged segment %s is not stored encrypted", s.ArtifactKey)
		}
	}
	restoresEqual(t, ce.Meta, ce.Arts, ce.SourceID, marks)
}

// The spool file of a merge that a killed btfu left is removed by a later
// run once it is a day old; a younger one (another merge may be writing
// it) stays.
func TestStaleSpoolFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "btfu-compact-app-1.ndjson.zst")
	fresh := filepath.Join(dir, "btfu-compact-app-2.ndjson.zst")
	other := filepath.Join(dir, "btfu-compact-shop-3.ndjson.zst")
	for _, f := range []string{stale, fresh, other} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-25 * time.Hour)
	for _, f := range []string{stale, other} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	meta, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "btfu.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	arts, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src, err := meta.UpsertSource(ctx, store.Source{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compact.Apply(ctx, meta, arts, src, compact.Options{After: time.Hour, SpoolDir: dir}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{stale: false, fresh: true, other: true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", filepath.Base(f), err == nil, want)
		}
	}
}
