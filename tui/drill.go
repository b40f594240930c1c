package tui

import (
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/tui/styles"
)

// drillLine is the dashboard's line about a source's last restore drill
// ("last drill: passed 2h ago, RTO 4m12s"), in the error style when it
// failed; "" when the source has had none.
func drillLine(st styles.Styles, s engine.SourceStatus, width int, now time.Time) string {
	d := s.LastDrill
	if d == nil {
		return ""
	}
	text := "  last drill: " + d.Line(now)
	if width > 0 {
		text = ansi.Truncate(text, width, "…")
	}
	if d.Status == store.DrillFailed {
		return st.Error.Render(text) + "\n"
	}
	return st.Muted.Render(text) + "\n"
}
