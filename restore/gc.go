package restore

import (
	"os"
	"runtime/debug"
	"sync"
)

// Replay makes a great deal of short-lived garbage: every record is
// decoded, reduced and rendered as COPY text, then dropped, while what
// replay holds at once stays bounded (the batch being gathered, the one
// the target runs, the records decoded ahead). With Go's default, a
// collection each time the heap doubles, collecting took about a sixth
// of replay's CPU on the 1M-row INSERT bench, and on a small machine the
// target's COPY waits for that CPU. While a restore replays, the
// collector runs when the heap has grown to 2.5 times what the last
// collection kept instead (replayGCPercent): the process may then hold
// about one and a half times what replay holds at once more than
// before. GOGC set in the environment, or a higher percent set by the
// program, is left as it is. (200 was no faster on the bench, and held
// 20 MiB more replaying the 1M-row UPDATE.)
const replayGCPercent = 150

var replayGC struct {
	sync.Mutex
	n    int // replays running with the percent set
	prev int // the percent before the first of them
}

// tuneGCForReplay sets replayGCPercent until undo is called.
func tuneGCForReplay() (undo func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	replayGC.Lock()
	defer replayGC.Unlock()
	if replayGC.n == 0 {
		prev := debug.SetGCPercent(replayGCPercent)
		if prev < 0 || prev >= replayGCPercent {
			debug.SetGCPercent(prev) // off, or already higher
			return func() {}
		}
		replayGC.prev = prev
	}
	replayGC.n++
	return func() {
		replayGC.Lock()
		defer replayGC.Unlock()
		if replayGC.n--; replayGC.n == 0 {
			debug.SetGCPercent(replayGC.prev)
		}
	}
}
