// Package store holds btfu's metadata: which sources it protects, and for
// each the chains, base backups, segments, schema and sequence snapshots,
// job runs and events that make restores possible.
//
// The Store interface has one implementation per backend: store/sqlite
// (the default, a single file) and store/postgres (for shared or
// multi-worker setups). Both run the same contract suite, store/storetest.
// Artifacts themselves (dumps, segments) live in an artifact store; this
// package records only their keys, sizes and checksums.
//
// LSNs are stored as integers (pglogrepl.LSN); times as UTC with microsecond
// precision.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pglogrepl"
)

// SchemaVersion is the newest metadata schema this binary knows. A store
// whose schema is newer is refused (ErrSchemaTooNew).
const SchemaVersion = 5

var (
	// ErrNotFound: the requested record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrSchemaTooNew: the metadata store was migrated by a newer btfu.
	ErrSchemaTooNew = errors.New("metadata schema is newer than this btfu")
	// ErrChainOrder: a segment does not follow the chain's previous segment
	// (its PrevEndLSN differs from the previous segment's EndLSN, or its
	// first commit starts before that end). Recording it would hide a gap or
	// a duplicate, so it is refused.
	ErrChainOrder = errors.New("segment does not follow the chain")
	// ErrConflict: a unique name or key is already taken.
	ErrConflict = errors.New("already exists")
)

// Store is what the engine, the restore and the TUI need from metadata.
// Implementations are safe for concurrent use.
type Store interface {
	// Sources. UpsertSource creates the source by name or updates its
	// slot, publication and identity fields; ID and CreatedAt are kept.
	UpsertSource(ctx context.Context, s Source) (Source, error)
	GetSource(ctx context.Context, name string) (Source, error)
	ListSources(ctx context.Context) ([]Source, error)
	SetSourceState(ctx context.Context, sourceID int64, state, lastError string) error
	SetSourcePaused(ctx context.Context, sourceID int64, paused bool) error

	// Chains: one per incarnation of the main slot. A chain starts at the
	// slot's consistent point and ends when the slot is lost or dropped.
	CreateChain(ctx context.Context, c Chain) (Chain, error)
	ListChains(ctx context.Context, sourceID int64) ([]Chain, error)
	// AdvanceChain moves the chain's durable cursor forward to lsn/at
	// (a keepalive acknowledged on an idle source). It never moves it
	// backward: a smaller lsn or earlier time is ignored for that field.
	AdvanceChain(ctx context.Context, chainID int64, lsn pglogrepl.LSN, at time.Time) error
	EndChain(ctx context.Context, chainID int64, at time.Time, reason string) error

	// Base backups.
	CreateBaseBackup(ctx context.Context, b BaseBackup) (BaseBackup, error)
	// UpdateBaseBackup saves every mutable field of b (status, finish time,
	// artifact key, sizes, checksum, error) by b.ID.
	UpdateBaseBackup(ctx context.Context, b BaseBackup) error
	ListBaseBackups(ctx context.Context, sourceID int64) ([]BaseBackup, error)
	DeleteBaseBackup(ctx context.Context, id int64) error

	// Segments. AddSegment records a stored segment and, in the same
	// transaction, advances its chain's cursor to seg.EndLSN and
	// seg.LastCommitTime. It returns ErrChainOrder unless seg.PrevEndLSN
	// equals the EndLSN of the chain's newest segment (or the chain's
	// StartLSN for the first) and seg.FirstCommitLSN >= seg.PrevEndLSN.
	AddSegment(ctx context.Context, seg Segment) (Segment, error)
	// ListSegments returns the source's segments ordered by chain, then
	// FirstCommitLSN, whose EndLSN > fromLSN (0 for all).
	ListSegments(ctx context.Context, sourceID int64, fromLSN pglogrepl.LSN) ([]Segment, error)
	DeleteSegment(ctx context.Context, id int64) error
	// ReplaceSegments swaps consecutive segments of one chain (oldIDs, in
	// chain order) for seg, which holds the same transactions (compaction),
	// in one transaction. seg must start where the first ends before
	// (PrevEndLSN, FirstCommitLSN) and end where the last does (EndLSN,
	// LastCommitLSN), with their summed TxCount and ChangeCount. Nothing
	// changes unless every old segment still exists (retention may have
	// deleted one: ErrNotFound) and they are consecutive; the chain's
	// cursor does not move. It returns seg with its new ID.
	ReplaceSegments(ctx context.Context, oldIDs []int64, seg Segment) (Segment, error)

	// Schema snapshots (pg_dump --schema-only), stored when they change.
	AddSchemaSnapshot(ctx context.Context, s SchemaSnapshot) (SchemaSnapshot, error)
	ListSchemaSnapshots(ctx context.Context, sourceID int64) ([]SchemaSnapshot, error)

	// Sequence snapshots, with their values.
	AddSequenceSnapshot(ctx context.Context, s SequenceSnapshot) (SequenceSnapshot, error)
	// ListSequenceSnapshots returns snapshots ordered by TakenAt, values
	// included.
	ListSequenceSnapshots(ctx context.Context, sourceID int64) ([]SequenceSnapshot, error)
	DeleteSequenceSnapshotsBefore(ctx context.Context, sourceID int64, before time.Time) (int64, error)

	// Table coverage: tables added to an explicit-list publication after
	// the source was registered are covered from FromLSN on; a restore
	// from a base backup older than that leaves them out and says so.
	AddTableCoverage(ctx context.Context, c TableCoverage) (TableCoverage, error)
	ListTableCoverage(ctx context.Context, sourceID int64) ([]TableCoverage, error)

	// Job runs (base backups, retention, verification, restores).
	StartJob(ctx context.Context, j Job) (Job, error)
	FinishJob(ctx context.Context, id int64, status, detail, errText string, at time.Time) error
	ListJobs(ctx context.Context, sourceID int64, limit int) ([]Job, error)

	// Restore drills. StartDrill records a drill (Status running when
	// empty); FinishDrill saves every field but SourceID and StartedAt by
	// d.ID; ListDrills returns the source's newest limit drills (all for
	// limit <= 0), newest first.
	StartDrill(ctx context.Context, d Drill) (Drill, error)
	FinishDrill(ctx context.Context, d Drill) error
	ListDrills(ctx context.Context, sourceID int64, limit int) ([]Drill, error)

	// Events for the TUI log and status: newest last.
	AddEvent(ctx context.Context, e Event) (Event, error)
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)

	// SchemaVersion reports the applied migration version.
	SchemaVersion(ctx context.Context) (int, error)
	Close() error
}

// Source is a protected database. The DSN is not stored: config.toml owns
// it, and metadata may be shared more widely than secrets should be.
type Source struct {
	ID               int64
	Name             string
	SystemIdentifier string // from IDENTIFY_SYSTEM, once known
	Database         string
	SlotName         string
	PublicationName  string
	State            string // one of the State constants
	LastError        string
	// Paused: the user paused the source at run time (btfu pause, the
	// TUI). config.toml's paused = true is the other way to pause.
	Paused    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Chain is one uninterrupted stream from a slot. Coverage of a chain runs
// from its first base backup's consistent LSN to CursorLSN.
type Chain struct {
	ID         int64
	SourceID   int64
	SlotName   string
	StartLSN   pglogrepl.LSN // the slot's consistent point
	StartedAt  time.Time
	CursorLSN  pglogrepl.LSN // durably stored and recorded; what the slot may be acknowledged to
	CursorTime time.Time     // commit or keepalive time matching CursorLSN
	EndedAt    time.Time     // zero while open
	EndReason  string
}

// Base backup statuses.
const (
	BackupRunning  = "running"
	BackupComplete = "complete"
	BackupFailed   = "failed"
)

// BaseBackup is a pg_dump -Fc archive taken at a slot's exported snapshot.
type BaseBackup struct {
	ID            int64
	SourceID      int64
	ChainID       int64
	ConsistentLSN pglogrepl.LSN // C: transactions with commit LSN >= C are after it
	SnapshotName  string
	SnapshotTime  time.Time // when the snapshot was exported
	StartedAt     time.Time
	FinishedAt    time.Time
	ArtifactKey   string
	SizeBytes     int64
	SHA256        string // hex of the stored bytes
	PgDumpVersion string
	ServerVersion string
	Status        string
	Error         string
}

// Source states, as recorded (Source.State), reported by btfu status and
// the control API, and shown by the TUI.
const (
	StateNew          = "new"          // configured, not registered yet
	StateRegistered   = "registered"   // registered, capture not started
	StateBackingUp    = "backing_up"   // taking a base backup (the first one, or on schedule while streaming)
	StateStreaming    = "streaming"    // capturing changes
	StateReconnecting = "reconnecting" // capture interrupted, retrying
	StatePaused       = "paused"       // paused by the user; the slot is kept within its WAL budget
	StateStopped      = "stopped"      // not running
	StateError        = "error"        // capture or registration cannot progress (LastError says why)
	StateUnregistered = "unregistered" // btfu unregister removed its objects; stored backups kept
	StateStarting     = "starting"     // a worker before its first state
)

// Segment describes one stored segment (../shared/DESIGN.md section 2).
type Segment struct {
	ID             int64
	SourceID       int64
	ChainID        int64
	FormatVersion  int
	ArtifactKey    string
	FirstCommitLSN pglogrepl.LSN
	LastCommitLSN  pglogrepl.LSN
	EndLSN         pglogrepl.LSN // end LSN of the last transaction
	PrevEndLSN     pglogrepl.LSN // EndLSN of the segment before it in the chain
	FirstCommitAt  time.Time
	LastCommitAt   time.Time
	TxCount        int64
	ChangeCount    int64
	RawBytes       int64 // uncompressed
	StoredBytes    int64
	SHA256         string
	CreatedAt      time.Time
}

// SchemaSnapshot is a stored pg_dump --schema-only of the source.
type SchemaSnapshot struct {
	ID          int64
	SourceID    int64
	LSN         pglogrepl.LSN
	TakenAt     time.Time
	ArtifactKey string
	SizeBytes   int64
	SHA256      string
}

// TableCoverage records when a table joined the publication, or (LeftOut)
// from when it is not backed up: it has no usable replica identity, and
// publishing it would make the application's UPDATE and DELETE fail.
type TableCoverage struct {
	ID       int64
	SourceID int64
	Table    string        // schema.table, as pgoutput names it
	FromLSN  pglogrepl.LSN // WAL position after the table was added (or left out)
	AddedAt  time.Time
	LeftOut  bool
	Reason   string // why it is left out; TableDropped: the table is gone
}

// TableDropped is the Reason of a record that ends a table's earlier
// records: the table was dropped (a table of the same name made later is
// another table).
const TableDropped = "dropped"

// LeftOutNow returns the tables whose newest record in recs (oldest
// first, as ListTableCoverage gives them) says they are left out, in the
// order they first appear.
func LeftOutNow(recs []TableCoverage) []string {
	state := map[string]bool{}
	var order []string
	for _, c := range recs {
		if _, seen := state[c.Table]; !seen {
			order = append(order, c.Table)
		}
		state[c.Table] = c.LeftOut
	}
	var out []string
	for _, t := range order {
		if state[t] {
			out = append(out, t)
		}
	}
	return out
}

// SequenceSnapshot is every sequence's state at one moment.
type SequenceSnapshot struct {
	ID       int64
	SourceID int64
	LSN      pglogrepl.LSN // pg_current_wal_lsn() when taken
	TakenAt  time.Time
	Values   []SequenceValue
}

// SequenceValue is one sequence in a snapshot.
type SequenceValue struct {
	Schema    string
	Name      string
	LastValue int64
	IsCalled  bool
}

// Job statuses.
const (
	JobRunning = "running"
	JobOK      = "ok"
	JobFailed  = "failed"
)

// Job is one run of a background task.
type Job struct {
	ID         int64
	SourceID   int64 // 0 when not tied to a source
	Kind       string
	Status     string
	StartedAt  time.Time
	FinishedAt time.Time
	Detail     string
	Error      string
}

// Event is one line of the engine's log shown in the TUI and status.
type Event struct {
	ID       int64
	SourceID int64 // 0 for engine-wide events
	At       time.Time
	Level    string // debug, info, warn, error
	Kind     string // e.g. "backup.finished", "slot.lost"
	Message  string
	Attrs    map[string]string
}

// EventFilter selects events. Zero fields do not filter. Results are the
// newest Limit matching events, in ascending ID order.
type EventFilter struct {
	SourceID int64
	MinLevel string
	AfterID  int64
	Limit    int
}

// Drill statuses.
const (
	DrillRunning = "running"
	DrillPassed  = "passed"
	DrillFailed  = "failed"
	// DrillInterrupted: stopped before its end (btfu stopping, Ctrl-C);
	// it proves nothing either way.
	DrillInterrupted = "interrupted"
)

// Drill table verdicts.
const (
	VerdictEqual   = "equal"    // same row count and hash at the drill's LSN
	VerdictDiffers = "differs"  // the restore holds other rows: the drill fails
	VerdictMissing = "missing"  // published on the source, absent from the restore: the drill fails
	VerdictLeftOut = "left_out" // not backed up for a documented reason (Reason): reported, not a failure
)

// Drill is one restore drill: the source hashed at a temporary slot's
// consistent point, restored to exactly that LSN into a scratch database,
// hashed there and compared table by table.
type Drill struct {
	ID         int64
	SourceID   int64
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	Status     string    // DrillRunning, DrillPassed, DrillFailed, DrillInterrupted
	Trigger    string    // "schedule" or "manual"
	LSN        pglogrepl.LSN
	BaseKey    string // the base backup the restore started from
	// Category and Hint say, for a failed drill, where it failed
	// (source, coverage, target, restore, compare) and what to do.
	Category string
	Error    string
	Hint     string
	Phases   []DrillPhase
	Tables   []DrillTable
	// SourceBytes: the hashed tables' size on the source; RestoredBytes:
	// the scratch database's size after the restore; ArtifactBytes: the
	// base backup and segments the restore read.
	SourceBytes   int64
	RestoredBytes int64
	ArtifactBytes int64
}

// DrillPhase is how long one phase of a drill took.
type DrillPhase struct {
	Name string        `json:"name"` // snapshot, hash_source, wait_coverage, restore, hash_restore
	Took time.Duration `json:"took"`
}

// DrillTable is one table's verdict in a drill.
type DrillTable struct {
	Table        string `json:"table"`
	Verdict      string `json:"verdict"`
	SourceRows   int64  `json:"source_rows"`
	RestoredRows int64  `json:"restored_rows"`
	Reason       string `json:"reason,omitempty"`
}

// PhaseTook is how long the named phase took (0 when it did not run).
func (d Drill) PhaseTook(name string) time.Duration {
	for _, p := range d.Phases {
		if p.Name == name {
			return p.Took
		}
	}
	return 0
}

// RTO is the drill's measured recovery time: its restore phase.
func (d Drill) RTO() time.Duration { return d.PhaseTook("restore") }
