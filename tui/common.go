package tui

import (
	"context"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/tui/styles"
)

// common is what the root and the dashboard share: the engine and its
// context, the styles, the keys and the clock. It is set up by New and
// only read afterwards.
type common struct {
	ctx    context.Context
	eng    Engine
	keys   KeyMap
	styles styles.Styles
	now    func() time.Time
}

// fetch reads the engine's status.
func (c *common) fetch() tea.Cmd {
	ctx, eng := c.ctx, c.eng
	return func() tea.Msg {
		st, err := eng.Status(ctx)
		return statusMsg{st: st, err: err}
	}
}
