package tui

import (
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/btfu/btfu/engine"
)

// CloseMsg: the focused screen is done; back to the dashboard, showing
// Status as a notice when set.
type CloseMsg struct{ Status string }

// OpenWizardMsg opens the restore wizard on Source, preset to At.
type OpenWizardMsg struct {
	Source string
	At     time.Time
}

// screenKind names a screen the dashboard opens (the wizard has
// OpenWizardMsg).
type screenKind int

const (
	detailScreen screenKind = iota
	timelineScreen
	registerScreen
	logScreen
)

// openMsg asks the root to open a screen over the dashboard, on source
// for the detail and the timeline.
type openMsg struct {
	screen screenKind
	source string
}

// startMsg asks the root to run cmd, showing notice until cmd's own
// notice replaces it (a base backup).
type startMsg struct {
	notice string
	cmd    tea.Cmd
}

// NoticeMsg is a one-line result of an action (backup, pause, resume).
type NoticeMsg struct {
	Text string
	Err  bool
}

type statusMsg struct {
	st  engine.Status
	err error
}

type tickMsg time.Time

// eventMsg is an engine event delivered by the bridge.
type eventMsg engine.EventRecord
