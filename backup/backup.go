// Package backup takes base backups of a source: pg_dump -Fc archives made
// in the snapshot that a logical replication slot exports as it is
// created, so that the slot's stream begins exactly where the dump ends
// (../shared/DESIGN.md section 1). With each base backup it records the
// source's sequences and, when it changed, its schema.
package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Request says which base backup to take and where to record it.
type Request struct {
	Source    *config.Source
	SourceID  int64
	Meta      store.Store
	Artifacts artifact.Store
	Log       *slog.Logger // nil discards

	// Main: create the source's main slot (Source.Slot, permanent) and a
	// new chain starting at its consistent point; this is the first base
	// backup of that chain. Otherwise a TEMPORARY slot named
	// <slot>_b<unix seconds> exports the snapshot (the main slot keeps
	// streaming meanwhile, DESIGN 1.4) and the base backup is recorded
	// against ChainID.
	Main    bool
	ChainID int64 // when !Main
	Jobs    int   // reserved: parallel pg_dump; ignored for now
}

// assumedDumpRate is the pg_dump throughput assumed when estimating the
// WAL that piles up during a dump (the same as probe's wal_budget check).
const assumedDumpRate = 30 << 20 // bytes/s

// stderrLimit bounds how much of pg_dump's error output is kept.
const stderrLimit = 8 << 10

// walSample is how long the WAL rate is watched before a dump.
const walSample = time.Second

var (
	// cmdHook, when set by a test, sees every pg_dump command before it
	// starts.
	cmdHook func(*exec.Cmd)
	// snapshotHook, when set by a test, runs after the snapshot is
	// imported, before pg_dump starts.
	snapshotHook func()

	snapshotNameRE = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)
)

// Take takes a base backup (DESIGN 1.1-1.5). It refuses early when
// pg_dump for the server's major is missing or the publication does not
// exist, creates the slot with EXPORT_SNAPSHOT on a replication connection
// that stays idle until pg_dump is done, records the chain (Main) and the
// base backup as running, reads every sequence in the exported snapshot,
// streams `pg_dump -Fc --snapshot` into the artifact store, then stores a
// schema-only dump taken in the same snapshot when the schema changed.
// It starts over with a new slot, up to rewriteAttempts times, when a
// published table was rewritten (rewrite.go), a table dropped, or an
// object's definition changed (catalog.go) after the snapshot and before
// pg_dump had read it.
//
// On failure it returns the error and the base backup record (zero when
// none was created): marked failed, its artifacts deleted, and when Main
// the slot dropped and the chain ended, since a slot without a complete
// base backup only holds WAL. Cancelling ctx kills pg_dump.
func Take(ctx context.Context, req Request) (store.BaseBackup, error) {
	if req.Source == nil || req.Meta == nil || req.Artifacts == nil {
		return store.BaseBackup{}, errors.New("base backup: Source, Meta and Artifacts are required")
	}
	if !req.Main && req.ChainID == 0 {
		return store.BaseBackup{}, fmt.Errorf("base backup of source %s: a base backup on a temporary slot needs the ChainID of the main slot's chain", req.Source.Name)
	}
	if req.Log == nil {
		req.Log = slog.New(slog.DiscardHandler)
	}
	var j *job
	for attempt := 1; ; attempt++ {
		j = &job{Request: req, log: req.Log.With("source", req.Source.Name), started: time.Now()}
		err := j.run(ctx)
		if err == nil {
			break
		}
		err = fmt.Errorf("base backup of source %s: %w", req.Source.Name, err)
		dropped := droppedSince(ctx, req.Source, lockedTable(err))
		if !(isRewritten(err) || isCatalogChanged(err) || dropped) || attempt == rewriteAttempts || ctx.Err() != nil {
			switch {
			case isRewritten(err):
				err = fmt.Errorf("%w; gave up after %d attempts: take the base backup when nothing truncates or rewrites published tables", err, attempt)
			case dropped:
				err = fmt.Errorf("%w; gave up after %d attempts: a table was dropped each time pg_dump started; take the base backup when the schema is quieter", err, attempt)
			case isCatalogChanged(err):
				err = fmt.Errorf("%w; gave up after %d attempts: DDL changed objects each time before pg_dump had read them; take the base backup when no DDL runs on the source (btfu backup)", err, attempt)
			}
			return j.fail(ctx, err)
		}
		// A new slot gives a new snapshot after the rewrite; fail logs
		// any cleanup problem, and a slot left behind fails the next try.
		_, _ = j.fail(ctx, fmt.Errorf("%w; starting over (attempt %d of %d)", err, attempt+1, rewriteAttempts))
	}
	j.log.Info("base backup complete", "consistent_lsn", j.base.ConsistentLSN.String(), "key", j.base.ArtifactKey,
		"size", human.Bytes(j.base.SizeBytes), "took", time.Since(j.started).Round(time.Millisecond).String())
	return j.base, nil
}

// droppedSince tells whether table (as pg_dump names it in LOCK TABLE)
// no longer exists: dropped after the snapshot, so a new snapshot will
// not list it. A table that exists failed to lock for another reason
// (privileges), which trying again does not cure.
func droppedSince(ctx context.Context, src *config.Source, table string) bool {
	if table == "" || ctx.Err() != nil {
		return false
	}
	conn, err := sourcedb.Connect(ctx, src)
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var gone bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NULL", table).Scan(&gone); err != nil {
		return false
	}
	return gone
}

// job is one Take in progress and what it has created so far.
type job struct {
	Request
	log     *slog.Logger
	started time.Time

	pgDump        pgbin.Program
	serverVersion string
	dsn           string   // for --dbname, without password
	env           []string // PGPASSWORD
	repl          *pgconn.PgConn
	slot          string
	created       bool     // the slot was created here
	written       []string // artifact keys to delete on failure
	chain         store.Chain
	base          store.BaseBackup
}

func (j *job) run(ctx context.Context) error {
	conn, err := sourcedb.Connect(ctx, j.Source)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := j.preflight(ctx, conn); err != nil {
		return err
	}
	defer j.closeRepl(ctx)
	lsn, snapshot, err := j.createSlot(ctx)
	if err != nil {
		return err
	}

	// Import the snapshot on the normal connection (the replication one
	// stays idle): its start time, just after C, is the snapshot time.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var at time.Time
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		return fmt.Errorf("import snapshot %s: %w", snapshot, err)
	}
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&at); err != nil {
		return fmt.Errorf("read snapshot time: %w", err)
	}
	files, err := tableFiles(ctx, tx, j.Source.Publication)
	if err != nil {
		return err
	}
	catalogStart := time.Now()
	catalog, err := readCatalog(ctx, tx, snapshot)
	if err != nil {
		return err
	}
	j.log.Debug("catalog read in the snapshot", "rows", catalog.rows(), "took", time.Since(catalogStart).Round(time.Millisecond).String())
	if snapshotHook != nil {
		snapshotHook()
	}

	if j.Main {
		j.chain, err = j.Meta.CreateChain(ctx, store.Chain{SourceID: j.SourceID, SlotName: j.slot,
			StartLSN: lsn, StartedAt: at, CursorLSN: lsn, CursorTime: at})
		if err != nil {
			return err
		}
		j.ChainID = j.chain.ID
	}
	j.base, err = j.Meta.CreateBaseBackup(ctx, store.BaseBackup{SourceID: j.SourceID, ChainID: j.ChainID,
		ConsistentLSN: lsn, SnapshotName: snapshot, SnapshotTime: at, StartedAt: j.started,
		ArtifactKey: artifactKey(j.Source.Name, "base", at, lsn, "dump"), PgDumpVersion: j.pgDump.Version,
		ServerVersion: j.serverVersion, Status: store.BackupRunning})
	if err != nil {
		return err
	}

	// Sequences are not MVCC: this reads their values now, at or after C,
	// which only errs on the safe side (DESIGN 4.6).
	seqs, err := readSequences(ctx, tx)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("end snapshot transaction: %w", err)
	}

	snapArg := "--snapshot=" + snapshot
	// Once pg_dump holds its locks no rewrite can happen until it ends:
	// check for one between C and then (rewrite.go). By its first table
	// data it has also deparsed every definition: check that none of
	// them changed since C (catalog.go).
	locked := func() error {
		if err := checkRewrites(ctx, conn, files); err != nil {
			return err
		}
		return checkCatalog(ctx, conn, catalog)
	}
	if j.base.SizeBytes, j.base.SHA256, err = j.dump(ctx, j.base.ArtifactKey, nil, locked, "-Fc", snapArg); err != nil {
		return explainDumpFailure(ctx, conn, catalog, err)
	}
	schemaKey := artifactKey(j.Source.Name, "schema", at, lsn, "sql")
	digest := newSchemaDigest()
	// The schema-only dump runs after the whole base: a change since C is
	// likelier by then, and spoils only this side record, not the base.
	schemaSize, schemaSum, schemaErr := j.dump(ctx, schemaKey, digest, nil, "--schema-only", "-Fp", snapArg)
	if schemaErr == nil {
		schemaErr = checkCatalog(ctx, conn, catalog)
	} else {
		schemaErr = explainDumpFailure(ctx, conn, catalog, schemaErr)
	}
	if schemaErr != nil && !isCatalogChanged(schemaErr) {
		return schemaErr
	}
	j.closeRepl(ctx) // the snapshot has served; a temporary slot goes with it

	if schemaErr != nil {
		j.log.Warn("schema snapshot not recorded: the schema changed while pg_dump ran; the next base backup records one",
			"key", schemaKey, "reason", schemaErr.Error())
		if err := j.Artifacts.Delete(ctx, schemaKey); err != nil {
			return fmt.Errorf("delete schema snapshot %s: %w", schemaKey, err)
		}
		j.written = slices.DeleteFunc(j.written, func(k string) bool { return k == schemaKey })
	} else if err := j.recordSchema(ctx, store.SchemaSnapshot{SourceID: j.SourceID, LSN: lsn, TakenAt: at,
		ArtifactKey: schemaKey, SizeBytes: schemaSize, SHA256: schemaSum}, digest.Sum()); err != nil {
		return err
	}
	if _, err := j.Meta.AddSequenceSnapshot(ctx, store.SequenceSnapshot{SourceID: j.SourceID, LSN: lsn, TakenAt: at, Values: seqs}); err != nil {
		return err
	}
	j.base.Status, j.base.FinishedAt = store.BackupComplete, time.Now()
	return j.Meta.UpdateBaseBackup(ctx, j.base)
}

// preflight refuses early what cannot work (DESIGN 1.1, 1.5): no pg_dump
// for the server's major, no publication, a DSN pg_dump cannot use, a
// chain that does not go on; and warns when the slot may not survive the
// dump.
func (j *job) preflight(ctx context.Context, conn *pgx.Conn) error {
	var versionNum int
	var dbSize, keepMB int64
	var pubExists bool
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version'),
		pg_database_size(current_database()),
		COALESCE((SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'), -1),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, j.Source.Publication).
		Scan(&versionNum, &j.serverVersion, &dbSize, &keepMB, &pubExists)
	if err != nil {
		return fmt.Errorf("read server settings: %w", err)
	}
	if j.pgDump, err = pgbin.Find(ctx, "pg_dump", versionNum/10000); err != nil {
		return err
	}
	if !pubExists {
		return fmt.Errorf("publication %s does not exist; register the source first", j.Source.Publication)
	}
	if j.dsn, j.env, err = DumpEnv(j.Source); err != nil {
		return err
	}
	if !j.Main {
		if err := j.checkChain(ctx); err != nil {
			return err
		}
	}
	j.warnWALBudget(ctx, conn, dbSize, keepMB)
	return nil
}

// createSlot opens the replication connection and creates the slot on it
// (DESIGN 1.2), returning its consistent point C and exported snapshot.
// The connection stays open and idle until closeRepl.
func (j *job) createSlot(ctx context.Context) (pglogrepl.LSN, string, error) {
	j.slot = j.Source.Slot
	if !j.Main {
		j.slot = tempSlotName(j.Source.Slot, time.Now())
	}
	var err error
	if j.repl, err = sourcedb.ConnectReplication(ctx, j.Source); err != nil {
		return 0, "", err
	}
	s, err := sourcedb.CreateExportedSlot(ctx, j.repl, j.slot, !j.Main)
	j.created = s.Name != ""
	if err != nil {
		return 0, "", err
	}
	if !snapshotNameRE.MatchString(s.Snapshot) {
		return 0, "", fmt.Errorf("slot %s exported an unexpected snapshot name %q", j.slot, s.Snapshot)
	}
	j.log.Info("slot created", "slot", j.slot, "temporary", !j.Main, "consistent_lsn", s.ConsistentPoint.String(), "snapshot", s.Snapshot)
	return s.ConsistentPoint, s.Snapshot, nil
}

// checkChain makes sure ChainID is an open chain of the source: a base
// backup is only useful on a chain that goes on from it.
func (j *job) checkChain(ctx context.Context) error {
	chains, err := j.Meta.ListChains(ctx, j.SourceID)
	if err != nil {
		return err
	}
	for _, c := range chains {
		if c.ID == j.ChainID && c.EndedAt.IsZero() {
			return nil
		}
		if c.ID == j.ChainID {
			return fmt.Errorf("chain %d ended at %s (%s); take a main base backup to start a new chain", c.ID, c.EndedAt.UTC().Format(time.RFC3339), c.EndReason)
		}
	}
	return fmt.Errorf("chain %d is not a chain of source %d", j.ChainID, j.SourceID)
}

// closeRepl closes the replication connection, ending the exported
// snapshot; a temporary slot is dropped first, so it is gone on return.
func (j *job) closeRepl(ctx context.Context) {
	if j.repl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if j.created && !j.Main {
		if err := pglogrepl.DropReplicationSlot(ctx, j.repl, j.slot, pglogrepl.DropReplicationSlotOptions{}); err != nil {
			j.log.Warn("drop temporary slot (closing its connection drops it too)", "slot", j.slot, "err", err)
		}
	}
	_ = j.repl.Close(ctx)
	j.repl = nil
}

// fail undoes what j created and records the failure, then returns the
// failed base backup and err, with any cleanup failure joined to it.
func (j *job) fail(ctx context.Context, err error) (store.BaseBackup, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	j.log.Error("base backup failed", "err", err)
	errs := []error{err}
	for _, key := range j.written {
		if derr := j.Artifacts.Delete(ctx, key); derr != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, derr))
		}
	}
	if j.created && j.Main {
		if derr := DropSlot(ctx, j.Source, j.slot); derr != nil {
			errs = append(errs, derr)
		}
	}
	now, msg := time.Now(), redact.String(err.Error())
	if j.base.ID != 0 {
		j.base.Status, j.base.FinishedAt, j.base.Error = store.BackupFailed, now, msg
		j.base.ArtifactKey, j.base.SizeBytes, j.base.SHA256 = "", 0, ""
		if uerr := j.Meta.UpdateBaseBackup(ctx, j.base); uerr != nil {
			errs = append(errs, uerr)
		}
	}
	if j.chain.ID != 0 {
		if eerr := j.Meta.EndChain(ctx, j.chain.ID, now, "first base backup failed: "+msg); eerr != nil {
			errs = append(errs, eerr)
		}
	}
	for _, e := range errs[1:] {
		j.log.Error("base backup cleanup failed", "err", e)
	}
	return j.base, errors.Join(errs...)
}

// DropSlot connects to the source and drops slot if it exists
// (sourcedb.DropSlot), for callers that hold no connection: a failed
// base backup once its own are closed, a worker starting over. It fails
// while another connection still uses the slot.
func DropSlot(ctx context.Context, src *config.Source, slot string) error {
	conn, err := sourcedb.Connect(ctx, src)
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	defer conn.Close(ctx)
	return sourcedb.DropSlot(ctx, conn, slot)
}

// warnWALBudget logs a warning when max_slot_wal_keep_size (MB, -1 for
// unlimited) is smaller than the WAL expected during the dump
// (DESIGN 1.5): the slot would be invalidated before the stream starts.
func (j *job) warnWALBudget(ctx context.Context, conn *pgx.Conn, dbSize, keepMB int64) {
	if keepMB < 0 {
		return
	}
	rate, err := walRate(ctx, conn)
	if err != nil {
		j.log.Debug("cannot sample the WAL rate", "err", err)
		return
	}
	if expected, over := walBudgetExceeded(keepMB, rate, dbSize); over {
		j.log.Warn("the slot may be invalidated during the base backup: more WAL is expected during pg_dump than max_slot_wal_keep_size allows",
			"expected_wal", human.Bytes(expected), "max_slot_wal_keep_size", human.Bytes(keepMB<<20),
			"database_size", human.Bytes(dbSize), "wal_rate", human.Bytes(int64(rate))+"/s",
			"hint", "raise max_slot_wal_keep_size, or take the base backup at a quiet time")
	}
}

// walBudgetExceeded estimates the WAL written during a dump of a database
// of dbSize bytes at assumedDumpRate (plus 10s) while WAL grows at rate
// bytes/s, and reports whether it exceeds keepMB megabytes.
func walBudgetExceeded(keepMB int64, rate float64, dbSize int64) (expected int64, over bool) {
	expected = int64(rate * (float64(dbSize)/assumedDumpRate + 10))
	return expected, keepMB >= 0 && expected > keepMB<<20
}

// walRate watches pg_current_wal_lsn() for walSample; bytes/s.
func walRate(ctx context.Context, conn *pgx.Conn) (float64, error) {
	a, err := currentLSN(ctx, conn)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-time.After(walSample):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	b, err := currentLSN(ctx, conn)
	if err != nil {
		return 0, err
	}
	return float64(b-a) / time.Since(start).Seconds(), nil
}

func currentLSN(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("read WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(s)
}

// tempSlotName is <slot>_b<unix seconds>, the slot shortened to keep
// within PostgreSQL's 63-byte names.
func tempSlotName(slot string, t time.Time) string {
	suffix := fmt.Sprintf("_b%d", t.Unix())
	return slot[:min(len(slot), 63-len(suffix))] + suffix
}

// artifactKey is <source>/<kind>/<UTC time>-<LSN as 16 hex digits>.<ext>.
func artifactKey(source, kind string, at time.Time, lsn pglogrepl.LSN, ext string) string {
	return fmt.Sprintf("%s/%s/%s-%016X.%s", source, kind, at.UTC().Format("20060102T150405Z"), uint64(lsn), ext)
}
