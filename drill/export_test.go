package drill

import "context"

// DefaultHint is the hint of a failure of category c with no better one.
func DefaultHint(c string) string { return defaultHints[c] }

// SetAfterSnapshot runs f after a drill's snapshot is imported and before
// its tables are locked, until the returned function is called.
func SetAfterSnapshot(f func(ctx context.Context)) (reset func()) {
	afterSnapshot = f
	return func() { afterSnapshot = nil }
}
