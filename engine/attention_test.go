package engine

import (
	"strings"
	"testing"
)

// A failed restore drill needs the user's attention (the TUI's red line,
// /health) until a drill passes: the backups may not restore exactly.
func TestFailedDrillNeedsAttention(t *testing.T) {
	ss := SourceStatus{Name: "app", State: "streaming", Streaming: true, BaseBackups: 1}
	if got := attention(ss); got != "" {
		t.Fatalf("attention without a drill: %q", got)
	}
	ss.LastDrill = &DrillInfo{Status: "passed"}
	if got := attention(ss); got != "" {
		t.Fatalf("attention after a passed drill: %q", got)
	}
	ss.LastDrill = &DrillInfo{Status: "failed", Category: "compare", Error: "public.items differs", Hint: "run 'btfu verify'"}
	if got := attention(ss); !strings.Contains(got, "restore drill failed (compare)") || !strings.Contains(got, "public.items differs") || !strings.Contains(got, "btfu verify") {
		t.Fatalf("attention after a failed drill: %q", got)
	}
}
