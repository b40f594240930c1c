// Package drill runs restore drills: it proves that what btfu stored
// restores exactly. A drill creates a temporary logical slot with an
// exported snapshot on the source, hashes every published table in that
// snapshot, waits until the stream covers the slot's consistent point C,
// restores to exactly C into a scratch database it creates on the drill
// target, hashes there, compares table by table and drops the scratch
// database. The record (store.Drill) keeps each table's verdict, how long
// each phase took (the restore phase is a measured recovery time) and
// the sizes.
//
// What it costs the source: one connection and one replication
// connection for the hashing phase; a temporary slot, which holds WAL
// and the catalog xmin only while the tables are hashed and is gone when
// its connection closes; one REPEATABLE READ READ ONLY transaction that
// reads every published table once (a sequential scan, a hash of each
// row in the server, one result row per table) and, while it lasts,
// holds ACCESS SHARE locks on them and keeps VACUUM from removing rows
// deleted after its snapshot, as any long pg_dump does.
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Phases, in order.
const (
	PhaseSnapshot     = "snapshot"      // temporary slot with an exported snapshot on the source
	PhaseHashSource   = "hash_source"   // every published table hashed in that snapshot
	PhaseWaitCoverage = "wait_coverage" // until the stream covers the slot's consistent point
	PhaseRestore      = "restore"       // scratch database created, restore to exactly that LSN (the RTO)
	PhaseHashRestore  = "hash_restore"  // the same tables hashed in the scratch database
)

// Failure categories.
const (
	CategorySource   = "source"   // connecting, the slot or the hashing on the source
	CategoryCoverage = "coverage" // the stream did not cover the drill's LSN in time
	CategoryTarget   = "target"   // drill_target unreachable, the source's server, no CREATEDB
	CategoryRestore  = "restore"  // the restore failed (a corrupt artifact, replay)
	CategoryCompare  = "compare"  // the restore does not hold what the source held
)

// Error is a failed drill: where it failed and what to do.
type Error struct {
	Category string
	Hint     string
	Err      error
}

func (e *Error) Error() string {
	msg := e.Category + ": " + redact.String(e.Err.Error())
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// fail returns a drill failure; an empty hint is the category's.
func fail(category, hint string, format string, args ...any) *Error {
	if hint == "" {
		hint = defaultHints[category]
	}
	return &Error{Category: category, Hint: hint, Err: fmt.Errorf(format, args...)}
}

// defaultHints say what to check when nothing more precise is known.
var defaultHints = map[string]string{
	CategorySource:   "check that the source is reachable and that btfu's role may read every published table ('btfu probe')",
	CategoryCoverage: "is the source streaming? see 'btfu status'",
	CategoryTarget:   "check drill_target: reachable from here, a role with CREATEDB, another server than the source's",
	CategoryRestore:  "run 'btfu verify' to check the stored artifacts; the drill's error names the step that failed",
	CategoryCompare:  "run 'btfu verify' and report the tables named",
}

// Options for a drill.
type Options struct {
	Source    *config.Source // connection, publication, drill_target
	Record    store.Source   // its metadata record
	Meta      store.Store
	Artifacts artifact.Store
	Trigger   string // "schedule" or "manual"
	// CoverageWait bounds the wait for the stream (default 10 minutes).
	CoverageWait time.Duration
	TempDir      string
	Log          *slog.Logger
	// Progress, if set, is called as each phase starts.
	Progress func(phase string)
}

// DefaultCoverageWait is how long a drill waits for the stream to cover
// its LSN.
const DefaultCoverageWait = 10 * time.Minute

// afterRestore, when set (tests), runs against the scratch database
// between the restore and its hashing.
var afterRestore func(ctx context.Context, scratchDSN string) error

// SetAfterRestoreHook makes drills run f on the scratch database after
// the restore and before hashing it, until the returned function is
// called. For tests: a drill whose restore differs.
func SetAfterRestoreHook(f func(ctx context.Context, scratchDSN string) error) (reset func()) {
	afterRestore = f
	return func() { afterRestore = nil }
}

// Run runs one drill of opts.Source and records it. The returned record
// is the stored one; err is an *Error when the drill failed.
func Run(ctx context.Context, opts Options) (store.Drill, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.CoverageWait <= 0 {
		opts.CoverageWait = DefaultCoverageWait
	}
	d := store.Drill{SourceID: opts.Record.ID, StartedAt: time.Now(), Trigger: opts.Trigger, Status: store.DrillRunning}
	d, err := opts.Meta.StartDrill(ctx, d)
	if err != nil {
		return d, fmt.Errorf("record the drill: %w", err)
	}
	r := &run{opts: opts, d: &d}
	runErr := r.run(ctx)
	d.FinishedAt = time.Now()
	d.Status = store.DrillPassed
	if runErr != nil {
		var de *Error
		if !errors.As(runErr, &de) {
			de = fail(CategorySource, "", "%w", runErr)
		}
		d.Status = store.DrillFailed
		if ctx.Err() != nil {
			d.Status = store.DrillInterrupted
			de = &Error{Category: de.Category, Hint: "the drill was interrupted (btfu stopping, or cancelled); run it again", Err: runErr}
		}
		runErr = de
		d.Category, d.Error, d.Hint = de.Category, redact.String(de.Err.Error()), de.Hint
	}
	if err := opts.Meta.FinishDrill(context.WithoutCancel(ctx), d); err != nil {
		return d, errors.Join(runErr, fmt.Errorf("record the drill's result: %w", err))
	}
	return d, runErr
}

type run struct {
	opts   Options
	d      *store.Drill
	phase  string
	start  time.Time
	tables []table
	hashes map[string]digest
}

// begin ends the running phase and starts the next.
func (r *run) begin(phase string) {
	r.end()
	r.phase, r.start = phase, time.Now()
	if r.opts.Progress != nil {
		r.opts.Progress(phase)
	}
	r.opts.Log.Info("drill phase", "source", r.opts.Source.Name, "phase", phase)
}

// end ends the running phase; a phase run again (a new snapshot) adds
// to its time.
func (r *run) end() {
	if r.phase == "" {
		return
	}
	took := time.Since(r.start)
	for i := range r.d.Phases {
		if r.d.Phases[i].Name == r.phase {
			r.d.Phases[i].Took += took
			r.phase = ""
			return
		}
	}
	r.d.Phases = append(r.d.Phases, store.DrillPhase{Name: r.phase, Took: took})
	r.phase = ""
}

func (r *run) run(ctx context.Context) error {
	defer r.end()
	src := r.opts.Source
	if src.DrillTarget == "" {
		return fail(CategoryTarget, fmt.Sprintf("set drill_target on source %s: a server where drills may create a scratch database", src.Name),
			"source %s has no drill_target", src.Name)
	}
	// The target first: a drill that cannot restore holds no slot on
	// the source.
	conn, err := r.checkTarget(ctx)
	if err != nil {
		return err
	}
	conn.Close(context.WithoutCancel(ctx))
	// A source that has nothing restorable yet (its first base backup
	// running) cannot cover a snapshot taken before its chain starts.
	if err := r.waitRestorable(ctx); err != nil {
		return err
	}
	if err := r.hashSource(ctx); err != nil {
		return err
	}
	r.begin(PhaseWaitCoverage)
	plan, err := r.waitCoverage(ctx)
	if err != nil {
		return err
	}
	r.d.BaseKey, r.d.ArtifactBytes = plan.Base.ArtifactKey, plan.Base.SizeBytes+plan.SegmentBytes
	r.begin(PhaseRestore)
	scratch, drop, err := r.createScratch(ctx)
	if err != nil {
		return err
	}
	defer func() {
		r.end() // dropping the scratch database is no phase of the drill
		drop()
	}()
	sum, err := restore.Run(ctx, r.opts.Meta, r.opts.Artifacts, r.opts.Record.ID, plan, restore.Options{
		TargetDSN: scratch, SourceSystemID: r.opts.Record.SystemIdentifier, SourceDatabase: r.opts.Record.Database,
		SourcePublication: r.opts.Record.PublicationName, NoOwner: true, TempDir: r.opts.TempDir, Log: r.opts.Log})
	if err != nil {
		hint := "run 'btfu verify' to check the stored artifacts"
		if errors.Is(err, restore.ErrCorruptArtifact) {
			hint = "an artifact is damaged: run 'btfu verify', then take a base backup ('btfu backup') so later restores avoid it"
		}
		return fail(CategoryRestore, hint, "restore to %s: %w", r.d.LSN, err)
	}
	if afterRestore != nil {
		if err := afterRestore(ctx, scratch); err != nil {
			return fail(CategoryRestore, "", "test hook: %w", err)
		}
	}
	r.begin(PhaseHashRestore)
	return r.compare(ctx, scratch, plan, sum)
}

// rewriteAttempts bounds how often a drill takes a new snapshot because
// a table was truncated or rewritten before its lock was held.
const rewriteAttempts = 3

// afterSnapshot, when set (tests), runs after the snapshot is imported
// and before the tables are locked.
var afterSnapshot func(ctx context.Context)

// hashSource creates the temporary slot, hashes every published table in
// its snapshot, and drops the slot. A table truncated or rewritten after
// the snapshot and before its lock (TRUNCATE and table rewrites are not
// MVCC-safe: the snapshot would read the new file) makes it start over
// with a new slot, as a base backup does.
func (r *run) hashSource(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		rewritten, err := r.hashAttempt(ctx)
		if err != nil || len(rewritten) == 0 {
			return err
		}
		if attempt == rewriteAttempts {
			return fail(CategorySource, "tables truncated or rewritten that often leave no stable snapshot; run the drill at a quieter time",
				"table(s) %s truncated or rewritten after each of %d snapshots, before the drill could lock them", strings.Join(rewritten, ", "), attempt)
		}
		r.opts.Log.Warn("drill: a table was truncated or rewritten after the snapshot; taking a new one", "source", r.opts.Source.Name, "tables", strings.Join(rewritten, ", "))
	}
}

// hashAttempt is one try of hashSource; it returns the tables rewritten
// before they were locked, if any (nothing hashed then).
func (r *run) hashAttempt(ctx context.Context) (rewritten []string, err error) {
	src := r.opts.Source
	r.begin(PhaseSnapshot)
	conn, err := sourcedb.Connect(ctx, src)
	if err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	repl, err := sourcedb.ConnectReplication(ctx, src)
	if err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	// Closing the replication connection ends the exported snapshot and
	// drops the temporary slot with it.
	defer repl.Close(context.WithoutCancel(ctx))
	slot := slotName(src.Slot, time.Now())
	res, err := sourcedb.CreateExportedSlot(ctx, repl, slot, true)
	if err != nil {
		hint := "the role needs REPLICATION and a free replication slot (max_replication_slots)"
		if res.Name != "" { // created, with an unusable reply
			hint = ""
		}
		return nil, fail(CategorySource, hint, "%w", err)
	}
	r.d.LSN = res.ConsistentPoint
	if err := setSession(ctx, conn); err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fail(CategorySource, "", "begin snapshot transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(res.Snapshot, "'", "")+"'"); err != nil {
		return nil, fail(CategorySource, "", "import snapshot %s: %w", res.Snapshot, err)
	}
	r.opts.Log.Info("drill snapshot", "source", src.Name, "slot", slot, "lsn", res.ConsistentPoint.String())

	r.begin(PhaseHashSource)
	pub := r.opts.Record.PublicationName
	if pub == "" {
		pub = src.Publication
	}
	if r.tables, err = publishedTables(ctx, tx, pub); err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	if len(r.tables) == 0 {
		return nil, fail(CategorySource, "register the source (btfu starts it) and check include_tables", "publication %s holds no table", pub)
	}
	files, err := tableFiles(ctx, tx, r.tables)
	if err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	if afterSnapshot != nil {
		afterSnapshot(ctx)
	}
	// As pg_dump does: ACCESS SHARE on every table until the hashing
	// ends, so none is truncated or rewritten meanwhile; then make sure
	// none was between the snapshot and the lock.
	if err := lockTables(ctx, tx, r.tables); err != nil {
		return nil, fail(CategorySource, "a long-running DDL or an ACCESS EXCLUSIVE lock on a published table kept the drill waiting; run it again when it is over", "%w", err)
	}
	rewritten, err = rewrittenTables(ctx, tx, files)
	if err != nil || len(rewritten) > 0 {
		if err != nil {
			return nil, fail(CategorySource, "", "%w", err)
		}
		return rewritten, nil
	}
	left, err := unpublishedTables(ctx, tx, pub)
	if err != nil {
		return nil, fail(CategorySource, "", "%w", err)
	}
	r.hashes = map[string]digest{}
	r.d.SourceBytes = 0
	for _, t := range r.tables {
		h, err := hashTable(ctx, tx, t)
		if err != nil {
			return nil, fail(CategorySource, "", "%w", err)
		}
		r.hashes[t.String()] = h
		r.d.SourceBytes += t.Bytes
	}
	for _, u := range left {
		r.d.Tables = append(r.d.Tables, store.DrillTable{Table: u.Table, Verdict: store.VerdictLeftOut, Reason: u.Reason})
	}
	return nil, nil
}

// waitRestorable waits until the source has a restorable range.
func (r *run) waitRestorable(ctx context.Context) error {
	deadline := time.Now().Add(r.opts.CoverageWait)
	for {
		cov, err := coverage.Load(ctx, r.opts.Meta, r.opts.Record.ID)
		if err != nil {
			return fail(CategoryCoverage, "", "read coverage: %w", err)
		}
		if len(cov.Ranges) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fail(CategoryCoverage, fmt.Sprintf("is source %s streaming? see 'btfu status'; a drill needs capture running and a complete base backup", r.opts.Source.Name),
				"source %s has nothing restorable yet (no complete base backup) after %s", r.opts.Source.Name, r.opts.CoverageWait)
		}
		select {
		case <-ctx.Done():
			return fail(CategoryCoverage, "", "waiting for a first base backup: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitCoverage waits until a restore to the drill's LSN can be planned.
func (r *run) waitCoverage(ctx context.Context) (*restore.Plan, error) {
	deadline := time.Now().Add(r.opts.CoverageWait)
	target := restore.Target{LSN: r.d.LSN}
	for {
		plan, err := restore.MakePlan(ctx, r.opts.Meta, r.opts.Record.ID, target)
		if err == nil {
			return plan, nil
		}
		if !errors.Is(err, restore.ErrOutsideCoverage) {
			return nil, fail(CategoryCoverage, "", "plan a restore to %s: %w", r.d.LSN, err)
		}
		if time.Now().After(deadline) {
			return nil, fail(CategoryCoverage, fmt.Sprintf("is source %s streaming? see 'btfu status'; a drill needs capture running and a complete base backup", r.opts.Source.Name),
				"the stream did not reach the drill's LSN %s within %s: %w", r.d.LSN, r.opts.CoverageWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, fail(CategoryCoverage, "", "waiting for the stream to reach %s: %w", r.d.LSN, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// createScratch creates the scratch database on the drill target and
// returns its DSN and a function that drops it. The target's server must
// not be the source's, and the scratch database must pass the restore's
// own target check (not the source, empty).
func (r *run) createScratch(ctx context.Context) (string, func(), error) {
	src := r.opts.Source
	conn, err := r.checkTarget(ctx)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var major int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		return "", nil, fail(CategoryTarget, "", "inspect drill_target: %w", err)
	}
	name := scratchName(src.Name, time.Now())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", nil, fail(CategoryTarget, "the drill_target role needs CREATEDB (ALTER ROLE … CREATEDB)", "create scratch database %s: %w", name, err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		c, err := pgx.Connect(dctx, src.DrillTarget)
		if err == nil {
			force := ""
			if major >= 13 {
				force = " WITH (FORCE)"
			}
			_, err = c.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+force)
			c.Close(dctx)
		}
		if err != nil {
			r.opts.Log.Warn("could not drop the drill's scratch database; drop it by hand", "database", name, "err", redact.String(err.Error()))
		}
	}
	dsn, err := withDatabase(src.DrillTarget, name)
	if err != nil {
		drop()
		return "", nil, fail(CategoryTarget, "", "%w", err)
	}
	if _, err := restore.CheckTarget(ctx, dsn, store.Source{SystemIdentifier: r.opts.Record.SystemIdentifier, Database: r.opts.Record.Database}); err != nil {
		drop()
		return "", nil, fail(CategoryTarget, "", "scratch database %s: %w", name, err)
	}
	return dsn, drop, nil
}

// checkTarget connects to the drill target and refuses the source's
// server: a drill writes a whole restore there.
func (r *run) checkTarget(ctx context.Context) (*pgx.Conn, error) {
	src := r.opts.Source
	conn, err := pgx.Connect(ctx, src.DrillTarget)
	if err != nil {
		return nil, fail(CategoryTarget, fmt.Sprintf("check drill_target of source %s: the server must be reachable from here", src.Name),
			"connect to drill_target: %s", redact.String(err.Error()))
	}
	var sysid string
	if err := conn.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&sysid); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fail(CategoryTarget, "", "inspect drill_target: %w", err)
	}
	known := r.opts.Record.SystemIdentifier
	if known == "" {
		// Not recorded yet: ask the source.
		if sc, err := sourcedb.Connect(ctx, src); err == nil {
			_ = sc.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&known)
			sc.Close(context.WithoutCancel(ctx))
		}
	}
	if sysid == known {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fail(CategoryTarget, fmt.Sprintf("point drill_target of source %s at another server: a drill writes a whole restore there", src.Name),
			"drill_target is on the source's server (system %s): btfu never restores onto the source", sysid)
	}
	return conn, nil
}

// compare hashes the scratch database's tables and gives each a verdict.
func (r *run) compare(ctx context.Context, scratch string, plan *restore.Plan, sum restore.Summary) error {
	conn, err := pgx.Connect(ctx, scratch)
	if err != nil {
		return fail(CategoryRestore, "", "connect to the scratch database: %s", redact.String(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := setSession(ctx, conn); err != nil {
		return fail(CategoryRestore, "", "scratch database: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&r.d.RestoredBytes); err != nil {
		return fail(CategoryRestore, "", "scratch database size: %w", err)
	}
	late := map[string]string{}
	for _, c := range plan.LeftOut() {
		late[c.Table] = plan.Describe(c)
	}
	var verdicts []store.DrillTable
	var bad []string
	for _, t := range r.tables {
		want := r.hashes[t.String()]
		v := store.DrillTable{Table: t.String(), SourceRows: want.Rows}
		if why, ok := late[t.String()]; ok {
			v.Verdict, v.Reason = store.VerdictLeftOut, why
			verdicts = append(verdicts, v)
			continue
		}
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&exists); err != nil {
			return fail(CategoryRestore, "", "scratch database: %w", err)
		}
		if !exists {
			v.Verdict, v.Reason = store.VerdictMissing, "absent from the restore"
			bad = append(bad, v.Table+" (missing)")
			verdicts = append(verdicts, v)
			continue
		}
		got, err := hashTable(ctx, conn, t)
		v.RestoredRows = got.Rows
		switch {
		case err != nil:
			v.Verdict, v.Reason = store.VerdictDiffers, redact.String(err.Error())
		case got != want:
			v.Verdict = store.VerdictDiffers
			v.Reason = fmt.Sprintf("%d rows restored, %d on the source", got.Rows, want.Rows)
			if got.Rows == want.Rows {
				v.Reason = fmt.Sprintf("same %d rows counted, different contents", got.Rows)
			}
		default:
			v.Verdict = store.VerdictEqual
		}
		if v.Verdict == store.VerdictDiffers {
			bad = append(bad, v.Table+" ("+v.Reason+")")
		}
		verdicts = append(verdicts, v)
	}
	r.d.Tables = append(verdicts, r.d.Tables...)
	if len(bad) > 0 {
		return fail(CategoryCompare, "the restore does not reproduce the source at this LSN: run 'btfu verify', keep this drill's record, and report the tables named with 'btfu status --json' output",
			"%d of %d table(s) differ at %s: %s", len(bad), len(r.tables), r.d.LSN, strings.Join(bad, "; "))
	}
	r.opts.Log.Info("drill passed", "source", r.opts.Source.Name, "lsn", r.d.LSN.String(), "tables", len(r.tables), "transactions", sum.Transactions)
	return nil
}

// slotName is <slot>_d<unix seconds>, within PostgreSQL's 63 bytes.
func slotName(slot string, t time.Time) string {
	suffix := fmt.Sprintf("_d%d", t.Unix())
	return slot[:min(len(slot), 63-len(suffix))] + suffix
}

// scratchName is btfu_drill_<source>_<unix seconds>, lower case, within
// 63 bytes.
func scratchName(source string, t time.Time) string {
	suffix := fmt.Sprintf("_%d", t.Unix())
	name := "btfu_drill_" + strings.ToLower(strings.ReplaceAll(source, "-", "_"))
	return name[:min(len(name), 63-len(suffix))] + suffix
}

// withDatabase returns dsn pointing at database name instead.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("drill_target: %s", redact.String(err.Error()))
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return "", fmt.Errorf("drill_target: %s", redact.String(err.Error()))
	}
	// In keyword/value form the last dbname wins.
	return strings.TrimSpace(dsn) + " dbname=" + name, nil
}
