package tui

import "github.com/btfu/btfu/engine"

// Local is the engine running in this process, as the TUI uses it: every
// operation is the engine's own method.
type Local struct{ *engine.Engine }
