// Package kind names the engine events btfu notifies about and how they
// relate: which are problems (one message per outage and quiet period),
// which clear which problem ("recovered"), and which are sent on their
// own. It is a leaf so that config can check the names in a channel's
// events list.
package kind

import (
	"slices"
	"strings"
)

// Kind is an engine event kind (EventRecord.Kind). Every kind btfu
// publishes is a constant here; the notified ones have an entry in kinds
// (Lookup), the others are only recorded, logged and shown.
type Kind string

// Kinds recorded and shown but not notified.
const (
	EngineStarted            Kind = "engine.started"
	EngineStopped            Kind = "engine.stopped"
	SourceRegistered         Kind = "source.registered"
	SourceRegisterFailed     Kind = "source.register_failed"
	ProbeWarn                Kind = "probe.warn"    // a probe check warns at registration
	SourcePause              Kind = "source.pause"  // asked for
	SourceResume             Kind = "source.resume" // asked for
	SourcePaused             Kind = "source.paused" // in effect
	SlotWALAtStart           Kind = "slot.wal_at_start"
	ScheduleFailed           Kind = "schedule.failed"
	PublicationTableAdded    Kind = "publication.table_added"
	PublicationTableLeftOut  Kind = "publication.table_left_out"
	PublicationTableNotOwned Kind = "publication.table_not_owned"
	RestoreStarted           Kind = "restore.started"
	DrillStarted             Kind = "drill.started"
	DrillInterrupted         Kind = "drill.interrupted"
	ConfigRestartNeeded      Kind = "config.restart_needed"
)

// The kinds btfu notifies about. Most are published by the capture
// worker and the engine already; lag.*, slot.wal_ok and drill.* are
// defined here first.
const (
	// Capture cannot progress (the same failure again with nothing stored
	// in between), and progresses again.
	CaptureError     Kind = "capture.error"
	CaptureRecovered Kind = "capture.recovered"
	// A source's worker stopped with an error.
	CaptureFailed Kind = "capture.failed"
	// Capture stalled: the newest stored commit or keepalive is older than
	// max_lag, and is not any more.
	LagOverMax   Kind = "lag.over_max"
	LagRecovered Kind = "lag.recovered"
	// The WAL guard: the slot holds 75% of its budget; back under half of
	// it; past it but used by another session; dropped (a gap).
	SlotWALWarning Kind = "slot.wal_warning"
	SlotWALOK      Kind = "slot.wal_ok"
	SlotInUse      Kind = "slot.in_use"
	SlotDropped    Kind = "slot.dropped"
	// Base backups.
	BackupFailed   Kind = "backup.failed"
	BackupFinished Kind = "backup.finished"
	// Restores.
	RestoreFailed   Kind = "restore.failed"
	RestoreFinished Kind = "restore.finished"
	// Restore drills (a drill restores and compares exactly; drills come
	// with their own issue).
	DrillFailed Kind = "drill.failed"
	DrillPassed Kind = "drill.passed"
	// Retention kept a base the policy would delete (the only one of the
	// chain that reaches now), or refused its own plan; or it failed.
	RetentionRefused Kind = "retention.refused"
	RetentionFailed  Kind = "retention.failed"
	// Compaction could not merge old segments (they stay, restorable, but
	// restores read more objects); it merged again.
	CompactionFailed    Kind = "compaction.failed"
	CompactionRecovered Kind = "compaction.recovered"
	// A changed config.toml was rejected (invalid, or applying it failed);
	// a later one was applied.
	ConfigInvalid      Kind = "config.invalid"
	ConfigReloadFailed Kind = "config.reload_failed"
	ConfigReloaded     Kind = "config.reloaded"
	// btfu notify test.
	Test Kind = "notify.test"
)

// Info says how a kind is notified.
type Info struct {
	// Title is what a message about it is headed with.
	Title string
	// Problem: an outage; repeated events of it for the same source are
	// one message per quiet period, and a kind in Recovers of another
	// clears it.
	Problem bool
	// Recovers lists the problems this kind clears.
	Recovers []Kind
	// Alone: sent as a message of its own (problems, completions);
	// otherwise only as the "recovered" message of a problem it clears.
	Alone bool
	// Default: sent to a channel whose events list is empty.
	Default bool
}

var kinds = map[Kind]Info{
	CaptureError:        {Title: "capture cannot progress", Problem: true, Alone: true, Default: true},
	CaptureFailed:       {Title: "capture stopped", Problem: true, Alone: true, Default: true},
	CaptureRecovered:    {Title: "capture progresses again", Recovers: []Kind{CaptureError, CaptureFailed}},
	LagOverMax:          {Title: "lag over max_lag (capture stalled)", Problem: true, Alone: true, Default: true},
	LagRecovered:        {Title: "lag back under max_lag", Recovers: []Kind{LagOverMax}},
	SlotWALWarning:      {Title: "slot holds WAL near its budget", Problem: true, Alone: true, Default: true},
	SlotInUse:           {Title: "slot over its WAL budget but used by another session", Problem: true, Alone: true, Default: true},
	SlotWALOK:           {Title: "slot WAL back under half its budget", Recovers: []Kind{SlotWALWarning, SlotInUse}},
	SlotDropped:         {Title: "slot dropped: a gap in the backups", Problem: true, Alone: true, Default: true},
	BackupFailed:        {Title: "base backup failed", Problem: true, Alone: true, Default: true},
	BackupFinished:      {Title: "base backup finished", Recovers: []Kind{BackupFailed, SlotDropped}, Alone: true},
	RestoreFailed:       {Title: "restore failed", Problem: true, Alone: true, Default: true},
	RestoreFinished:     {Title: "restore finished", Recovers: []Kind{RestoreFailed}, Alone: true, Default: true},
	DrillFailed:         {Title: "restore drill failed", Problem: true, Alone: true, Default: true},
	DrillPassed:         {Title: "restore drill passed", Recovers: []Kind{DrillFailed}, Alone: true},
	RetentionRefused:    {Title: "retention refused to delete", Problem: true, Alone: true, Default: true},
	RetentionFailed:     {Title: "retention failed", Problem: true, Alone: true, Default: true},
	CompactionFailed:    {Title: "compaction failed (old segments stay unmerged)", Problem: true, Alone: true, Default: true},
	CompactionRecovered: {Title: "compaction works again", Recovers: []Kind{CompactionFailed}},
	ConfigInvalid:       {Title: "config reload rejected", Problem: true, Alone: true, Default: true},
	ConfigReloadFailed:  {Title: "config reload failed", Problem: true, Alone: true, Default: true},
	ConfigReloaded:      {Title: "configuration reloaded", Recovers: []Kind{ConfigInvalid, ConfigReloadFailed}},
	Test:                {Title: "test message", Alone: true, Default: true},
}

// Lookup returns how k is notified; false for kinds btfu does not notify
// about.
func Lookup(k Kind) (Info, bool) {
	i, ok := kinds[k]
	return i, ok
}

// All returns every notified kind, sorted.
func All() []Kind {
	out := make([]Kind, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ValidPattern reports whether p may appear in a channel's events list:
// a kind, "group.*" for a group that has kinds, or "*".
func ValidPattern(p string) bool {
	if p == "*" {
		return true
	}
	if group, ok := strings.CutSuffix(p, ".*"); ok {
		for k := range kinds {
			if strings.HasPrefix(string(k), group+".") {
				return true
			}
		}
		return false
	}
	_, ok := kinds[Kind(p)]
	return ok
}

// Matches reports whether a channel whose events list is patterns gets
// messages of kind k. An empty list means the Default kinds; the test
// message goes everywhere.
func Matches(patterns []string, k Kind) bool {
	if k == Test {
		return true
	}
	if len(patterns) == 0 {
		return kinds[k].Default
	}
	for _, p := range patterns {
		if p == "*" || p == string(k) {
			return true
		}
		if group, ok := strings.CutSuffix(p, ".*"); ok && strings.HasPrefix(string(k), group+".") {
			return true
		}
	}
	return false
}
