package restore

import (
	"runtime"
	"strings"
	"testing"
)

// pg_restore runs in parallel by default for large bases, one job per
// core up to MaxAutoJobs; small bases and an explicit count are left alone.
func TestJobsDefaultToCoresForLargeBases(t *testing.T) {
	cores := min(runtime.NumCPU(), MaxAutoJobs)
	if n, why := (Options{}).jobs(ParallelFrom - 1); n != 1 || why != "" {
		t.Errorf("small base: %d jobs (%s), want 1", n, why)
	}
	if n, _ := (Options{Jobs: 3}).jobs(1 << 40); n != 3 {
		t.Errorf("--jobs 3: %d jobs", n)
	}
	n, why := (Options{TempDir: t.TempDir()}).jobs(ParallelFrom)
	if cores >= 2 && n != cores {
		t.Errorf("large base on %d cores: %d jobs (%s)", cores, n, why)
	}
	// No room for the local copy: one job, and the reason.
	n, why = (Options{TempDir: t.TempDir()}).jobs(1 << 60)
	if cores >= 2 && (n != 1 || !strings.Contains(why, "TMPDIR")) {
		t.Errorf("base larger than the disk: %d jobs (%q), want 1 and why", n, why)
	}
}
