package drill_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/drill"
	"github.com/btfu/btfu/internal/capturetest"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/store"
)

var source, target *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source, &target)) }

const schema = `
CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric, at timestamptz, tags text[]);
CREATE TABLE items (order_id int, line int, note text, PRIMARY KEY (order_id, line));
CREATE TABLE keyless (v text);
CREATE UNLOGGED TABLE cache (k int PRIMARY KEY, v text);
INSERT INTO orders SELECT g, 'c' || g, g * 1.5, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', ARRAY['a', 'b'] FROM generate_series(1, 200) g;
INSERT INTO items SELECT g % 50, g, NULL FROM generate_series(1, 300) g;
INSERT INTO keyless VALUES ('x'), ('x');
INSERT INTO cache VALUES (1, 'one');
CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events SELECT g, '2025-06-01'::date + g FROM generate_series(1, 400) g;
`

// fixture is a registered source streaming into its stores, with a base
// backup, and its drill options.
type fixture struct {
	db   string
	env  *capturetest.Env
	opts drill.Options
	stop func() // stops the stream
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := source.CreateDB(t)
	source.Exec(t, db, schema)
	env := capturetest.Setup(t, source, db, fmt.Sprintf("segment_max_age = \"200ms\"\ndrill_target = %q", target.DSN("postgres")))
	w := env.Worker(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	// Changes after the base backup, so the restore replays some.
	waitBase(t, env)
	source.Exec(t, db, `UPDATE orders SET total = total + 1 WHERE id % 7 = 0;
		DELETE FROM items WHERE line % 11 = 0;
		INSERT INTO orders VALUES (1000, 'late', NULL, now(), NULL);
		INSERT INTO keyless VALUES ('y');
		DELETE FROM events WHERE id % 5 = 0`)
	rec, err := env.Meta.GetSource(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, env: env, stop: stop, opts: drill.Options{Source: env.Source, Record: rec, Meta: env.Meta, Artifacts: env.Arts,
		Trigger: "manual", CoverageWait: time.Minute, TempDir: t.TempDir()}}
}

func waitBase(t *testing.T, env *capturetest.Env) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		bases, err := env.Meta.ListBaseBackups(context.Background(), env.SourceID)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bases {
			if b.Status == store.BackupComplete {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no base backup within 60s")
}

func verdicts(d store.Drill) map[string]store.DrillTable {
	out := map[string]store.DrillTable{}
	for _, v := range d.Tables {
		out[v.Table] = v
	}
	return out
}

// scratchDatabases lists the drill databases left on the target.
func scratchDatabases(t *testing.T) []string {
	t.Helper()
	return pgtest.QueryValue[[]string](t, target, "postgres", "SELECT coalesce(array_agg(datname::text), '{}') FROM pg_database WHERE datname LIKE 'btfu_drill_%'")
}

func TestDrillPassesAndRecordsVerdictsPhasesAndSizes(t *testing.T) {
	f := newFixture(t)
	d, err := drill.Run(t.Context(), f.opts)
	if err != nil {
		t.Fatalf("drill: %v\n%+v", err, d)
	}
	if d.Status != store.DrillPassed || d.LSN == 0 || d.BaseKey == "" {
		t.Errorf("drill record %+v", d)
	}
	v := verdicts(d)
	for name, want := range map[string]store.DrillTable{
		"public.orders": {Verdict: store.VerdictEqual, SourceRows: 201, RestoredRows: 201},
		"public.items":  {Verdict: store.VerdictEqual, SourceRows: 273, RestoredRows: 273},
	} {
		got := v[name]
		if got.Verdict != want.Verdict || got.SourceRows != want.SourceRows || got.RestoredRows != want.RestoredRows {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	for _, name := range []string{"public.keyless", "public.cache"} {
		if got := v[name]; got.Verdict != store.VerdictLeftOut || got.Reason == "" {
			t.Errorf("%s must be reported LEFT OUT with its reason, not compared: %+v", name, got)
		}
	}
	if !strings.Contains(v["public.cache"].Reason, "unlogged") || !strings.Contains(v["public.keyless"].Reason, "no primary key") {
		t.Errorf("left-out reasons: %+v", d.Tables)
	}
	for _, p := range []string{drill.PhaseSnapshot, drill.PhaseHashSource, drill.PhaseWaitCoverage, drill.PhaseRestore, drill.PhaseHashRestore} {
		if d.PhaseTook(p) <= 0 {
			t.Errorf("phase %s not timed: %+v", p, d.Phases)
		}
	}
	if d.RTO() != d.PhaseTook(drill.PhaseRestore) || d.SourceBytes <= 0 || d.RestoredBytes <= 0 || d.ArtifactBytes <= 0 {
		t.Errorf("RTO or sizes missing: %+v", d)
	}
	// A partitioned table's partitions are compared one by one.
	if a, b := v["public.events_2025"], v["public.events_2026"]; a.Verdict != store.VerdictEqual || b.Verdict != store.VerdictEqual || a.SourceRows+b.SourceRows != 320 {
		t.Errorf("partitions %+v %+v", a, b)
	}
	stored, err := f.env.Meta.ListDrills(t.Context(), f.env.SourceID, 1)
	if err != nil || len(stored) != 1 || stored[0].ID != d.ID || stored[0].Status != store.DrillPassed || len(stored[0].Tables) != len(d.Tables) || len(stored[0].Phases) != 5 {
		t.Errorf("stored drill %+v, %v", stored, err)
	}
	if left := scratchDatabases(t); len(left) > 0 {
		t.Errorf("scratch databases left on the target: %v", left)
	}
	// The temporary slot went with its connection.
	if n := pgtest.QueryValue[int64](t, source, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%\\_d%' AND temporary"); n != 0 {
		t.Errorf("%d temporary drill slot(s) left on the source", n)
	}
}

func TestDrillWhoseRestoreDiffersFailsNamingTheTable(t *testing.T) {
	f := newFixture(t)
	defer drill.SetAfterRestoreHook(func(ctx context.Context, dsn string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "UPDATE items SET note = 'tampered' WHERE order_id = 3 AND line = 3")
		return err
	})()
	d, err := drill.Run(t.Context(), f.opts)
	var de *drill.Error
	if !errors.As(err, &de) || de.Category != drill.CategoryCompare || !strings.Contains(err.Error(), "public.items") || strings.Contains(err.Error(), "public.orders") {
		t.Fatalf("want a compare failure naming public.items only, got %v", err)
	}
	v := verdicts(d)
	if v["public.items"].Verdict != store.VerdictDiffers || !strings.Contains(v["public.items"].Reason, "different contents") || v["public.orders"].Verdict != store.VerdictEqual {
		t.Errorf("verdicts %+v", d.Tables)
	}
	stored, _ := f.env.Meta.ListDrills(t.Context(), f.env.SourceID, 1)
	if len(stored) != 1 || stored[0].Status != store.DrillFailed || stored[0].Category != drill.CategoryCompare || stored[0].Hint == "" || !strings.Contains(stored[0].Error, "public.items") {
		t.Errorf("stored drill %+v", stored)
	}
	if left := scratchDatabases(t); len(left) > 0 {
		t.Errorf("scratch databases left on the target after a failed drill: %v", left)
	}
}

func TestDrillTargetOnTheSourceIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, dsn := range []string{source.DSN(f.db), source.DSN("postgres")} {
		src := *f.opts.Source
		src.DrillTarget = dsn
		opts := f.opts
		opts.Source = &src
		d, err := drill.Run(t.Context(), opts)
		var de *drill.Error
		if !errors.As(err, &de) || de.Category != drill.CategoryTarget || !strings.Contains(err.Error(), "source's server") {
			t.Errorf("drill_target %s: want it refused as the source's server, got %v", dsn, err)
		}
		// Refused before anything touched the source.
		if d.Status != store.DrillFailed || len(d.Phases) != 0 {
			t.Errorf("record %+v", d)
		}
	}
	if n := pgtest.QueryValue[int64](t, source, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'btfu_drill_%'"); n != 0 {
		t.Errorf("a scratch database was created on the source's server")
	}
}

// A drill cut short is recorded as interrupted, not failed, and leaves
// no scratch database.
func TestInterruptedDrill(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer drill.SetAfterRestoreHook(func(context.Context, string) error {
		cancel()
		return ctx.Err()
	})()
	d, err := drill.Run(ctx, f.opts)
	if err == nil || d.Status != store.DrillInterrupted || !strings.Contains(d.Hint, "interrupted") {
		t.Fatalf("want an interrupted drill, got %v (%+v)", err, d)
	}
	stored, _ := f.env.Meta.ListDrills(t.Context(), f.env.SourceID, 1)
	if len(stored) != 1 || stored[0].Status != store.DrillInterrupted {
		t.Errorf("stored %+v", stored)
	}
	if left := scratchDatabases(t); len(left) > 0 {
		t.Errorf("scratch databases left on the target after an interrupted drill: %v", left)
	}
}

// A damaged artifact fails the drill in its restore phase, naming the
// artifact, with what to do.
func TestDrillWithADamagedBaseBackupFails(t *testing.T) {
	f := newFixture(t)
	bases, err := f.env.Meta.ListBaseBackups(t.Context(), f.env.SourceID)
	if err != nil || len(bases) == 0 {
		t.Fatal(bases, err)
	}
	key := bases[0].ArtifactKey
	if _, err := f.env.Arts.Put(t.Context(), key, strings.NewReader("not a dump")); err != nil {
		t.Fatal(err)
	}
	d, err := drill.Run(t.Context(), f.opts)
	var de *drill.Error
	if !errors.As(err, &de) || de.Category != drill.CategoryRestore || !strings.Contains(err.Error(), key) || !strings.Contains(de.Hint, "btfu verify") {
		t.Fatalf("want a restore failure naming %s, got %v", key, err)
	}
	if d.Status != store.DrillFailed || d.PhaseTook(drill.PhaseRestore) <= 0 || len(d.Tables) == 0 {
		t.Errorf("record %+v", d)
	}
	if left := scratchDatabases(t); len(left) > 0 {
		t.Errorf("scratch databases left: %v", left)
	}
}

func TestEveryFailureCategoryHasAHint(t *testing.T) {
	for _, c := range []string{drill.CategorySource, drill.CategoryCoverage, drill.CategoryTarget, drill.CategoryRestore, drill.CategoryCompare} {
		if h := drill.DefaultHint(c); h == "" {
			t.Errorf("category %s has no hint", c)
		}
	}
}

// Without the stream the drill's LSN is never covered: the drill fails
// in its wait, says why, and leaves no slot on the source.
func TestDrillWithoutTheStreamFailsOnCoverage(t *testing.T) {
	f := newFixture(t)
	f.stop()
	f.opts.CoverageWait = time.Second
	d, err := drill.Run(t.Context(), f.opts)
	var de *drill.Error
	if !errors.As(err, &de) || de.Category != drill.CategoryCoverage || !strings.Contains(err.Error(), "did not reach the drill's LSN") || !strings.Contains(de.Hint, "btfu status") {
		t.Fatalf("want a coverage failure, got %v", err)
	}
	if d.PhaseTook(drill.PhaseWaitCoverage) < time.Second || d.PhaseTook(drill.PhaseRestore) != 0 {
		t.Errorf("phases %+v", d.Phases)
	}
	if n := pgtest.QueryValue[int64](t, source, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE temporary"); n != 0 {
		t.Errorf("%d temporary slot(s) left on the source", n)
	}
}

// A TRUNCATE committed after the drill's snapshot and before its locks
// would make the snapshot read the new, empty file: the drill takes a
// new snapshot and compares exactly.
func TestTruncateBeforeTheLocksTakesANewSnapshot(t *testing.T) {
	f := newFixture(t)
	calls := 0
	defer drill.SetAfterSnapshot(func(ctx context.Context) {
		calls++
		if calls == 1 {
			source.Exec(t, f.db, "TRUNCATE items")
		}
	})()
	d, err := drill.Run(t.Context(), f.opts)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if calls != 2 {
		t.Errorf("%d snapshot(s), want 2 (the first one spoiled by the TRUNCATE)", calls)
	}
	if v := verdicts(d)["public.items"]; v.Verdict != store.VerdictEqual || v.SourceRows != 0 {
		t.Errorf("items %+v, want equal and empty as of the second snapshot", v)
	}
	if len(d.Phases) != 5 {
		t.Errorf("phases %+v: a phase run again adds to its time", d.Phases)
	}
}
