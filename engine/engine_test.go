package engine

import (
	"context"
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
	"github.com/btfu/btfu/store"
)

var source, target *pgtest.Cluster // target: restore drills (drill_test.go)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source, &target)) }

func newEngine(t *testing.T, extra string) (*Engine, string) {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text); CREATE SEQUENCE lonely")
	dir := t.TempDir()
	cfg, err := config.Parse("e.toml", []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[[source]]
name = "app"
dsn = %q
slot = "s_%s"
%s
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), source.DSN(db), db, extra)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	return e, db
}

func run(t *testing.T, e *Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("engine did not stop in 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitState(t *testing.T, e *Engine, state string) SourceStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Sources[0].State == state {
			return st.Sources[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %q, want %q (last error %q)", st.Sources[0].State, state, st.Sources[0].LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBackupOnDemandWhileStreaming(t *testing.T) {
	e, db := newEngine(t, "")
	run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('a')")
	b, err := e.BackupNow(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != store.BackupComplete {
		t.Fatalf("base backup %+v", b)
	}
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('b')")
	st := waitState(t, e, "streaming")
	if st.BaseBackups != 2 || len(st.Coverage) != 1 {
		t.Fatalf("status after a second base backup: %+v", st)
	}
	// The temporary slot is gone; only the main slot remains.
	slots := pgtest.QueryValue[int64](t, source, db, fmt.Sprintf("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%'", db))
	if slots != 1 {
		t.Fatalf("%d slots", slots)
	}
	if st.SourceLSN == "" || st.LagBytes == nil {
		t.Fatalf("live status lacks source LSN and lag: %+v", st)
	}
	if st.NextBackup == nil || st.NextBackup.Before(time.Now()) {
		t.Fatalf("next scheduled base backup: %v", st.NextBackup)
	}
	if _, err := e.BackupNow(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `no source "nope"`) {
		t.Fatalf("unknown source: %v", err)
	}
}

func TestScheduledBaseBackupRuns(t *testing.T) {
	e, _ := newEngine(t, `schedule = "* * * * *"`)
	run(t, e)
	waitState(t, e, "streaming")
	// The every-minute job fires within 60s of start.
	deadline := time.Now().Add(75 * time.Second)
	for {
		st, _ := e.Status(context.Background())
		if st.Sources[0].BaseBackups >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled base backup: %+v", st.Sources[0])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestPausedSourceDropsItsSlotPastTheBudget(t *testing.T) {
	pauseCheckEvery = 200 * time.Millisecond
	e, db := newEngine(t, "")
	stop := run(t, e)
	waitState(t, e, "streaming")
	stop()
	// Paused with the smallest budget; then the source writes past it.
	e.cfg.Sources[0].Paused = true
	e.cfg.Sources[0].PauseWALBudget = 16 << 20
	e.runners["app"].worker = nil
	run(t, e)
	waitState(t, e, "paused")
	source.Exec(t, db, "INSERT INTO t(v) SELECT repeat('w', 1000) FROM generate_series(1, 40000)")
	deadline := time.Now().Add(60 * time.Second)
	for {
		chains, _ := e.meta.ListChains(context.Background(), 1)
		if len(chains) == 1 && !chains[0].EndedAt.IsZero() {
			if !strings.Contains(chains[0].EndReason, "WAL budget") {
				t.Fatalf("end reason %q", chains[0].EndReason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not dropped past the budget: %+v", chains)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := pgtest.QueryValue[int64](t, source, db, fmt.Sprintf("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's_%s'", db)); n != 0 {
		t.Fatal("slot still there")
	}
}

func TestRetentionAfterBaseBackups(t *testing.T) {
	e, db := newEngine(t, "keep_base_backups = 1\nkeep_for = \"1s\"")
	run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('a')")
	time.Sleep(1500 * time.Millisecond)
	if _, err := e.BackupNow(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	bases, _ := e.meta.ListBaseBackups(context.Background(), 1)
	if len(bases) != 1 {
		t.Fatalf("%d base backups kept, want 1", len(bases))
	}
	st := waitState(t, e, "streaming")
	if len(st.Coverage) != 1 || st.Coverage[0].FromLSN != bases[0].ConsistentLSN.String() {
		t.Fatalf("coverage after retention: %+v (base at %s)", st.Coverage, bases[0].ConsistentLSN)
	}
}
