package restore

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// ParallelFrom is the stored size of a base backup from which a restore
// without an explicit job count runs pg_restore in parallel (one job per
// core, at most MaxAutoJobs): below it, copying the archive to local disk
// first (parallel pg_restore needs a seekable file) costs more than the
// jobs win.
const (
	ParallelFrom = 256 << 20
	MaxAutoJobs  = 8
)

// jobs returns the pg_restore job count for a base backup of size bytes:
// Options.Jobs when set; else one per core when the base is at least
// ParallelFrom and the temporary directory has room for its copy, with
// why it chose one job otherwise ("" when nothing needs saying).
func (o Options) jobs(size int64) (int, string) {
	if o.Jobs > 0 {
		return o.Jobs, ""
	}
	n := min(runtime.NumCPU(), MaxAutoJobs)
	if n < 2 || size < ParallelFrom {
		return 1, ""
	}
	dir := o.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	if free, ok := freeBytes(dir); ok && free < size+size/10 {
		return 1, fmt.Sprintf("pg_restore runs as one job: %s has %s free, the local copy that parallel jobs need takes %s (set TMPDIR to a larger disk, or --jobs)", dir, human.Bytes(free), human.Bytes(size))
	}
	return n, ""
}

// encryptedArtifact says whether key is stored encrypted (age), from the
// first bytes of its stored object.
func encryptedArtifact(ctx context.Context, arts artifact.Store, key string) bool {
	rc, err := artifact.Stored(arts).Get(ctx, key)
	if err != nil {
		return false
	}
	defer rc.Close()
	head := make([]byte, len(agecrypt.Magic))
	n, _ := io.ReadFull(rc, head)
	return agecrypt.Encrypted(head[:n])
}
