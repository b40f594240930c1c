package tui

import (
	"time"

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
