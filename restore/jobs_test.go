package restore

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/local"
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

// An encrypted base backup is restored by one job unless --jobs says
// otherwise: parallel jobs would read a decrypted copy left in $TMPDIR.
// The check reads the stored object's first bytes.
func TestEncryptedBaseIsSeenFromItsHeader(t *testing.T) {
	ctx := context.Background()
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) {
		if _, err := dir.Put(ctx, key, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	put("app/base/plain.dump", "PGDMP…")
	put("app/base/sealed.dump", agecrypt.Magic+"-> X25519 …")
	if encryptedArtifact(ctx, dir, "app/base/plain.dump") {
		t.Error("a plain archive taken for encrypted")
	}
	if !encryptedArtifact(ctx, dir, "app/base/sealed.dump") {
		t.Error("an age file not seen as encrypted")
	}
}
