package restore

import (
	"runtime/debug"
	"testing"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Replay collects when the heap has grown by replayGCPercent, until the last replay
// running ends; GOGC in the environment or a higher percent stays.
func TestReplayGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	undo1 := tuneGCForReplay()
	undo2 := tuneGCForReplay()
	if got := gcPercent(); got != replayGCPercent {
		t.Fatalf("GC percent %d during replay, want %d", got, replayGCPercent)
	}
	undo1()
	if got := gcPercent(); got != replayGCPercent {
		t.Fatalf("GC percent %d while a second replay runs, want %d", got, replayGCPercent)
	}
	undo2()
	if got := gcPercent(); got != 100 {
		t.Fatalf("GC percent %d after replay, want 100 back", got)
	}

	debug.SetGCPercent(400)
	tuneGCForReplay()()
	if got := gcPercent(); got != 400 {
		t.Fatalf("GC percent %d after replay with 400 set, want 400", got)
	}

	debug.SetGCPercent(100)
	t.Setenv("GOGC", "100")
	undo := tuneGCForReplay()
	if got := gcPercent(); got != 100 {
		t.Errorf("GC percent %d during replay with GOGC=100 set, want 100", got)
	}
	undo()
}
