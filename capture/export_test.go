package capture

import (
	"context"

	"github.com/btfu/btfu/sourcedb"
)

// RecordNewTables exposes recordNewTables to the external tests, which
// have a source cluster.
func (w *Worker) RecordNewTables(ctx context.Context, nt *sourcedb.NewTables) {
	w.recordNewTables(ctx, nt)
}
