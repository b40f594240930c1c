package tui

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/tui/styles"
)

func TestDashboardShowsTheLastDrill(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	passed := engine.NewDrillInfo(store.Drill{Status: store.DrillPassed, StartedAt: now.Add(-2*time.Hour - 5*time.Minute), FinishedAt: now.Add(-2 * time.Hour),
		Phases: []store.DrillPhase{{Name: "restore", Took: 4*time.Minute + 12*time.Second}}})
	failed := engine.NewDrillInfo(store.Drill{Status: store.DrillFailed, Category: "compare", StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Hour),
		Tables: []store.DrillTable{{Verdict: store.VerdictDiffers}}})
	st := engine.Status{Sources: []engine.SourceStatus{
		{Name: "orders", State: "streaming", LastDrill: passed},
		{Name: "billing", State: "streaming", LastDrill: failed},
		{Name: "never", State: "streaming"},
	}}
	out := renderSources(styles.Default(), st, 0, 80, now)
	for _, want := range []string{"last drill: passed 2h ago, RTO 4m12s", "last drill: FAILED 1h ago (compare): 1 table(s) differ"} {
		if !strings.Contains(out, want) {
			t.Errorf("dashboard lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "last drill:"); n != 2 {
		t.Errorf("%d drill lines, want 2 (none for a source without a drill):\n%s", n, out)
	}
	if line := drillLine(styles.Default(), st.Sources[0], 20, now); len([]rune(strings.TrimSpace(ansi.Strip(line)))) > 20 {
		t.Errorf("drill line not cut to the width: %q", line)
	}
}
