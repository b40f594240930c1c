package tui

import (
	"context"
	"fmt"

	tea "charm.land/bubbletea/v2"
)

// The engine commands the dashboard and the source detail run on a
// source; each answers with the notice the root shows.

func backupCmd(ctx context.Context, eng Engine, name string) tea.Cmd {
	return func() tea.Msg {
		b, err := eng.BackupNow(ctx, name)
		if err != nil {
			return NoticeMsg{Text: fmt.Sprintf("base backup of %s failed: %v", name, err), Err: true}
		}
		return NoticeMsg{Text: fmt.Sprintf("base backup of %s complete: %s at %s", name, b.ArtifactKey, b.ConsistentLSN)}
	}
}

func pauseCmd(ctx context.Context, eng Engine, name string, pause bool) tea.Cmd {
	return func() tea.Msg {
		verb, f := "paused", eng.Pause
		if !pause {
			verb, f = "resumed", eng.Resume
		}
		if err := f(ctx, name); err != nil {
			return NoticeMsg{Text: err.Error(), Err: true}
		}
		return NoticeMsg{Text: name + " " + verb}
	}
}
