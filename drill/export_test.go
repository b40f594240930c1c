package drill

// DefaultHint is the hint of a failure of category c with no better one.
func DefaultHint(c string) string { return defaultHints[c] }
