package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// waitEvent reads ev until an event of kind arrives.
func waitEvent(t *testing.T, ev <-chan EventRecord, kind string) EventRecord {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case r := <-ev:
			if r.Kind == kind {
				return r
			}
		case <-timeout:
			t.Fatalf("no %s event in 60s", kind)
		}
	}
}

func TestPauseSurvivesRestartAndResumeLosesNothing(t *testing.T) {
	e, db := newEngine(t, "")
	ctx := context.Background()
	events := e.Subscribe(t.Context())
	stop := run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('before pause')")

	if err := e.Pause(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "source.pause")
	st := waitState(t, e, "paused")
	if !st.Paused || !strings.Contains(st.Attention, "paused") {
		t.Fatalf("paused status: %+v", st)
	}
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('while paused')")
	stop()

	// A new btfu on the same metadata stays paused.
	e2, err := Open(ctx, e.Config(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	run(t, e2)
	waitState(t, e2, "paused")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('while paused, restarted')")
	if err := e2.Resume(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	waitState(t, e2, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('after resume')")
	want := pgtest.QueryValue[string](t, source, db, "SELECT string_agg(v, ',' ORDER BY id) FROM t")
	lsn := source.CurrentLSN(t)

	// Everything written while paused is restored: the slot kept it.
	deadline := time.Now().Add(60 * time.Second)
	var plan *restore.Plan
	for {
		plan, err = e2.PlanRestore(ctx, "app", restore.Target{LSN: lsn})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coverage never reached %s: %v", lsn, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	target := source.CreateDB(t)
	if _, err := e2.Restore(ctx, "app", plan, restore.Options{TargetDSN: source.DSN(target)}); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryValue[string](t, source, target, "SELECT string_agg(v, ',' ORDER BY id) FROM t"); got != want {
		t.Fatalf("restored %q, source held %q", got, want)
	}
	st2, err := e2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := st2.Sources[0].LastRestore; r == nil || r.Status != "ok" || !strings.Contains(r.Detail, "transactions") {
		t.Fatalf("last restore in status: %+v", r)
	}
	// A restore stopped as it starts (right after restore.started) is
	// recorded too, as failed.
	src, err := e2.meta.GetSource(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Restore(stopped, e2.meta, e2.artifacts, src, plan, restore.Options{TargetDSN: source.DSN(source.CreateDB(t))}); err == nil {
		t.Fatal("a cancelled restore succeeded")
	}
	if st2, err = e2.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if r := st2.Sources[0].LastRestore; r == nil || r.Status == "ok" {
		t.Fatalf("last restore after one stopped as it started: %+v", r)
	}
}

func TestResumeRefusesASourcePausedInConfig(t *testing.T) {
	e, _ := newEngine(t, "paused = true")
	run(t, e)
	waitState(t, e, "paused")
	err := e.Resume(context.Background(), "app")
	if err == nil || !strings.Contains(err.Error(), "paused = false") {
		t.Fatalf("resume of a source paused in config: %v", err)
	}
}

// A pause recorded while no btfu runs (btfu pause) stores the record the
// engine's own Pause stores, so a btfu starting on either reads the same
// source; resuming a source that never ran records nothing.
func TestOfflinePauseRecordsWhatTheEnginesPauseRecords(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t, "")
	if err := e.Pause(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	want, err := e.Meta().GetSource(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}

	offline := e.Config().Metadata
	offline.Path = filepath.Join(t.TempDir(), "offline.db")
	meta, err := OpenMetadata(ctx, offline)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	src := &e.Config().Sources[0]
	if rec, changed, err := RecordPaused(ctx, meta, src, false); err != nil || changed || rec.ID != 0 {
		t.Fatalf("resume of a source that never ran: %+v changed=%v %v", rec, changed, err)
	}
	if _, err := meta.GetSource(ctx, "app"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resume of a source that never ran recorded it: %v", err)
	}
	rec, changed, err := RecordPaused(ctx, meta, src, true)
	if err != nil || !changed {
		t.Fatalf("offline pause: changed=%v %v", changed, err)
	}
	got, err := meta.GetSource(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	same := func(s store.Source) store.Source {
		s.ID, s.CreatedAt, s.UpdatedAt = 0, time.Time{}, time.Time{}
		return s
	}
	if same(got) != same(want) {
		t.Fatalf("offline pause stored\n%+v\nthe engine's pause stored\n%+v", got, want)
	}
	if same(rec) != same(got) {
		t.Fatalf("offline pause returned\n%+v\nbut stored\n%+v", rec, got)
	}
	if !got.Paused || got.State != store.StateNew || got.Database == "" {
		t.Fatalf("paused record of a source that never ran: %+v", got)
	}
	if _, changed, err := RecordPaused(ctx, meta, src, true); err != nil || changed {
		t.Fatalf("second offline pause: changed=%v %v", changed, err)
	}
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigReloadAddsSourcesAndKeepsRunningOnAnInvalidEdit(t *testing.T) {
	dir := t.TempDir()
	db1, db2 := source.CreateDB(t), source.CreateDB(t)
	for _, db := range []string{db1, db2} {
		source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text)")
	}
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('s_%s', 's_%s') AND NOT active", db1, db2))
	})
	head := fmt.Sprintf("[metadata]\npath = %q\n[storage]\npath = %q\n[engine]\nspool_dir = %q\n", filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir())
	one := fmt.Sprintf("[[source]]\nname = \"one\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db1), db1)
	two := fmt.Sprintf("[[source]]\nname = \"two\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db2), db2)
	path := filepath.Join(dir, "config.toml")
	writeConfig(t, path, head+one)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	old := configPoll
	configPoll = 100 * time.Millisecond
	t.Cleanup(func() { configPoll = old })
	events := e.Subscribe(t.Context())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.WatchConfig(ctx, nil)
	run(t, e)
	waitState(t, e, "streaming")

	// A valid edit adds a source, which starts streaming.
	writeConfig(t, path, head+one+two)
	waitEvent(t, events, "config.reloaded")
	waitFor(t, func() bool {
		st, err := e.Status(context.Background())
		return err == nil && len(st.Sources) == 2 && st.Sources[1].Name == "two" && st.Sources[1].State == "streaming"
	}, "source two streaming after the edit")

	// An invalid edit keeps both running and names the key.
	writeConfig(t, path, head+one+two+"\n[[source]]\nname = \"three\"\ndsn = \"postgres://x/y\"\nschedule = \"every 5m\"\n")
	ev := waitEvent(t, events, "config.invalid")
	if !strings.Contains(ev.Message, "schedule") || !strings.Contains(ev.Message, "previous configuration") {
		t.Fatalf("invalid edit reported as %q", ev.Message)
	}
	st, err := e.Status(context.Background())
	if err != nil || len(st.Sources) != 2 {
		t.Fatalf("after an invalid edit: %+v %v", st, err)
	}

	// Removing a source stops it; its records stay. The [api] edit in the
	// same change cannot apply live and is reported.
	writeConfig(t, path, head+"[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"x-token-for-the-test\"\n"+two)
	waitEvent(t, events, "config.reloaded")
	if ev := waitEvent(t, events, "config.restart_needed"); !strings.Contains(ev.Message, "[api]") {
		t.Fatalf("an [api] edit reported as %q", ev.Message)
	}
	waitFor(t, func() bool {
		st, err := e.Status(context.Background())
		return err == nil && len(st.Sources) == 1 && st.Sources[0].Name == "two"
	}, "source one removed")
	waitFor(t, func() bool {
		return pgtest.QueryValue[bool](t, source, "postgres", fmt.Sprintf("SELECT NOT active FROM pg_replication_slots WHERE slot_name = 's_%s'", db1))
	}, "the removed source's walsender gone")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
