package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/drill"
	"github.com/btfu/btfu/notify"
	"github.com/btfu/btfu/store"
)

func drillsOf(t *testing.T, e *Engine) []store.Drill {
	t.Helper()
	rec, err := e.meta.GetSource(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := e.meta.ListDrills(context.Background(), rec.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// The drill schedule fires while the source streams; the drill passes
// and status shows it, with the next one.
func TestScheduledDrillRunsAndShowsInStatus(t *testing.T) {
	e, db := newEngine(t, fmt.Sprintf("drill_schedule = \"@every 2s\"\ndrill_target = %q\nsegment_max_age = \"200ms\"", target.DSN("postgres")))
	stop := run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) SELECT 'r' || g FROM generate_series(1, 50) g")
	var passed store.Drill
	waitFor(t, func() bool {
		for _, d := range drillsOf(t, e) {
			if d.Trigger == "schedule" && d.Status == store.DrillPassed {
				passed = d
				return true
			}
		}
		return false
	}, "a scheduled drill that passed")
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ss := st.Sources[0]
	if ss.LastDrill == nil || ss.NextDrill == nil {
		t.Fatalf("status lacks the last or next drill: %+v", ss)
	}
	stop()
	if len(passed.Tables) != 1 || passed.Tables[0].Table != "public.t" || passed.Tables[0].Verdict != store.VerdictEqual || passed.RTO() <= 0 {
		t.Errorf("scheduled drill %+v", passed)
	}
	events, err := e.meta.ListEvents(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range events {
		found = found || (ev.Kind == "drill.passed" && ev.Attrs["trigger"] == "schedule" && strings.Contains(ev.Message, "restored exactly"))
	}
	if !found {
		t.Errorf("no drill.passed event for the scheduled drill")
	}
	// Without a running engine, status reads the last drill from metadata.
	rs, err := ReadStatus(context.Background(), e.meta, e.Config())
	if err != nil || rs.Sources[0].LastDrill == nil || rs.Sources[0].NextDrill != nil {
		t.Errorf("ReadStatus: %+v, %v", rs.Sources[0], err)
	}
}

// A drill whose restore differs fails naming the table and is an alert
// at the configured webhook.
func TestFailedDrillIsAnAlert(t *testing.T) {
	var mu sync.Mutex
	var got []notify.WebhookBody
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var wb notify.WebhookBody
		_ = json.Unmarshal(b, &wb)
		mu.Lock()
		got = append(got, wb)
		mu.Unlock()
	}))
	defer hook.Close()
	e, db := newEngine(t, fmt.Sprintf("drill_target = %q\nsegment_max_age = \"200ms\"\n[[notify.channel]]\nname = \"ops\"\nkind = \"webhook\"\nurl = %q",
		target.DSN("postgres"), hook.URL))
	run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) SELECT 'r' || g FROM generate_series(1, 20) g")
	defer drill.SetAfterRestoreHook(func(ctx context.Context, dsn string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DELETE FROM t WHERE id = 7")
		return err
	})()
	d, err := e.Drill(context.Background(), "app", "manual")
	if err == nil || !strings.Contains(err.Error(), "public.t") || d.Status != store.DrillFailed {
		t.Fatalf("want a failed drill naming public.t, got %v (%+v)", err, d)
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range got {
			if b.Kind == "drill.failed" && b.Source == "app" && strings.Contains(b.Message, "public.t") && b.Attrs["category"] == drill.CategoryCompare {
				return true
			}
		}
		return false
	}, "drill.failed at the webhook, naming the table")
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ld := st.Sources[0].LastDrill; ld == nil || ld.Status != store.DrillFailed || ld.Differ != 1 || ld.Category != drill.CategoryCompare {
		t.Errorf("status last drill %+v", ld)
	}
}

func TestDrillLine(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    store.Drill
		want string
	}{
		{store.Drill{Status: store.DrillPassed, StartedAt: now.Add(-2*time.Hour - 5*time.Minute), FinishedAt: now.Add(-2 * time.Hour),
			Phases: []store.DrillPhase{{Name: "restore", Took: 4*time.Minute + 12*time.Second + 300*time.Millisecond}}}, "passed 2h ago, RTO 4m12s"},
		{store.Drill{Status: store.DrillFailed, Category: "compare", StartedAt: now.Add(-3 * 24 * time.Hour), FinishedAt: now.Add(-3 * 24 * time.Hour),
			Tables: []store.DrillTable{{Verdict: store.VerdictDiffers}, {Verdict: store.VerdictEqual}}}, "FAILED 3d ago (compare): 1 table(s) differ"},
		{store.Drill{Status: store.DrillFailed, Category: "target", StartedAt: now.Add(-90 * time.Second), FinishedAt: now.Add(-30 * time.Second)}, "FAILED 30s ago (target)"},
		{store.Drill{Status: store.DrillRunning, StartedAt: now.Add(-12 * time.Minute)}, "running, started 12m ago"},
		{store.Drill{Status: store.DrillInterrupted, StartedAt: now.Add(-12 * time.Minute), FinishedAt: now.Add(-10 * time.Minute)}, "interrupted 10m ago"},
	} {
		if got := NewDrillInfo(tc.d).Line(now); got != tc.want {
			t.Errorf("Line = %q, want %q", got, tc.want)
		}
	}
}

// An interrupted drill (btfu stopping) does not hide the result before it.
func TestStatusSkipsInterruptedDrills(t *testing.T) {
	e, _ := newEngine(t, "")
	ctx := context.Background()
	rec, err := e.meta.GetSource(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, d := range []store.Drill{
		{SourceID: rec.ID, StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Hour), Status: store.DrillPassed},
		{SourceID: rec.ID, StartedAt: now, FinishedAt: now, Status: store.DrillInterrupted},
	} {
		if _, err := e.meta.StartDrill(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	st, err := ReadStatus(ctx, e.meta, e.Config())
	if err != nil {
		t.Fatal(err)
	}
	if ld := st.Sources[0].LastDrill; ld == nil || ld.Status != store.DrillPassed {
		t.Errorf("last drill %+v, want the passed one before the interrupted one", ld)
	}
}
