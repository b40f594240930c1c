package api

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/store"
)

func TestDrillMetrics(t *testing.T) {
	now := time.Now()
	done := now.Add(-2 * time.Hour)
	st := engine.Status{Sources: []engine.SourceStatus{
		{Name: "passed", LastDrill: engine.NewDrillInfo(store.Drill{Status: store.DrillPassed, StartedAt: done.Add(-5 * time.Minute), FinishedAt: done,
			Phases: []store.DrillPhase{{Name: "restore", Took: 4*time.Minute + 12*time.Second}}, Tables: []store.DrillTable{{Verdict: store.VerdictEqual}}})},
		{Name: "failed", LastDrill: engine.NewDrillInfo(store.Drill{Status: store.DrillFailed, StartedAt: done, FinishedAt: done,
			Tables: []store.DrillTable{{Verdict: store.VerdictDiffers}, {Verdict: store.VerdictMissing}, {Verdict: store.VerdictLeftOut}}})},
		{Name: "running", LastDrill: engine.NewDrillInfo(store.Drill{Status: store.DrillRunning, StartedAt: now})},
		{Name: "never"},
	}}
	var buf bytes.Buffer
	writeDrillMetrics(&buf, st, now)
	got := parseExposition(t, buf.String())
	for series, want := range map[string]float64{
		`btfu_drill_passed{source="passed"}`:        1,
		`btfu_drill_passed{source="failed"}`:        0,
		`btfu_drill_age_seconds{source="passed"}`:   7200,
		`btfu_drill_rto_seconds{source="passed"}`:   252,
		`btfu_drill_tables_differ{source="failed"}`: 2,
		`btfu_drill_tables_differ{source="passed"}`: 0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	for _, absent := range []string{`btfu_drill_passed{source="running"}`, `btfu_drill_passed{source="never"}`} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s: no finished drill, no sample", absent)
		}
	}
}

// The drill route refuses, with the fix, a source without drill_target
// (cli tests run real drills through it), and names unknown sources.
func TestDrillRouteRefusals(t *testing.T) {
	d := running(t, Options{Token: token})
	c := d.client(t)
	if code, body := raw(t, c, http.MethodPost, "/v1/sources/app/drill"); code != http.StatusConflict || !strings.Contains(body, "no drill_target") {
		t.Errorf("no drill_target: %d %s", code, body)
	}
	if code, body := raw(t, c, http.MethodPost, "/v1/sources/nope/drill"); code != http.StatusNotFound {
		t.Errorf("unknown source: %d %s", code, body)
	}
	if code, body := raw(t, c, http.MethodGet, "/v1/sources/app/drill"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %s", code, body)
	}
}
