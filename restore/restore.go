package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Options for a restore.
type Options struct {
	TargetDSN string
	// SourceSystemID and SourceDatabase identify the source, so restoring
	// into it is refused (DESIGN 4.4).
	SourceSystemID string
	SourceDatabase string
	// SourcePublication is btfu's publication on the source: pg_dump put
	// it, and btfu's DDL-capture objects, in the base backup; the restore
	// drops them from the target, which is not a source of btfu's (a
	// restored FOR ALL TABLES publication would make the restored
	// database's UPDATEs on tables without a key fail).
	SourcePublication string
	Clean             bool // allow a non-empty target: its user tables are dropped first by pg_restore --clean
	// NoOwner restores without owners (pg_restore --no-owner): objects
	// belong to the restoring role, and replay runs every captured
	// statement as it, leaving ALTER … OWNER TO out. Without it the
	// target needs the roles that own the backup's objects (refused
	// before anything is written otherwise), and replay runs each
	// captured statement as the role that ran it on the source.
	NoOwner bool
	// Jobs: parallel pg_restore jobs; above 1 the base is copied to
	// TempDir first. 0: one per core (at most MaxAutoJobs) for a base of
	// ParallelFrom or more when TempDir has room for the copy, else 1.
	Jobs    int
	TempDir string // "" for the system's
	// OnDDLError: what replay does when captured DDL fails on the
	// target (default DDLErrorStop).
	OnDDLError DDLErrorPolicy
	Log        *slog.Logger
	// Progress, if set, is called at each phase and after each segment.
	Progress func(Progress)
	// ReadAhead is how many segments are read at once, to verify them and
	// ahead of replay (0: 32; 1 reads one after the other). Object stores
	// answer each request after a first-byte latency, so reading many at
	// once is what keeps a long history of small segments quick to
	// restore; memory stays within 64MiB of read-ahead whatever it is.
	ReadAhead int
}

func (o Options) readAhead() int {
	if o.ReadAhead <= 0 {
		return readAhead
	}
	return o.ReadAhead
}

// Progress describes a running restore.
type Progress struct {
	Phase        string // verify, pg_restore, replay, sequences, done
	Bytes        int64  // segment bytes replayed so far
	TotalBytes   int64
	Transactions int64
	LastLSN      segment.LSN // commit LSN of the last replayed transaction
	Elapsed      time.Duration
}

// Summary reports a finished restore.
type Summary struct {
	Base         store.BaseBackup
	Transactions int64
	Rows         int64
	CopiedRows   int64 // of Rows, inserted with COPY (runs of inserts into one table)
	// NetRows: of Rows, applied set-based (reduced to their net effect
	// per key, a few statements per table and target transaction).
	NetRows int64
	// NetFallbacks counts buffers of changes applied again one by one
	// after a set-based statement failed or touched another number of
	// rows (the one-by-one apply names the row, or succeeds).
	NetFallbacks int64
	// NetBatches counts the batches NetRows were applied in (each in a
	// savepoint of its own on the target).
	NetBatches int64
	// LeftOut names tables this restore could not bring to the target
	// point, and why (they joined the publication after the base backup).
	LeftOut []string
	// SkippedDDL lists captured DDL that failed on the target and was
	// skipped (Options.OnDDLError = DDLErrorSkip): the restore differs
	// from the source there.
	SkippedDDL []SkippedDDL
	// TempDDL counts captured commands on temporary objects, which stay
	// in the session that made them and are not replayed.
	TempDDL int
	// LargeObjects counts the large objects the target holds: as the base
	// backup had them, since logical decoding does not carry them.
	LargeObjects int64
	// OwnerChanges counts statements about owners left out: with
	// NoOwner, ALTER … OWNER TO (and DROP OWNED BY, whose objects are
	// dropped one by one); without it, those naming a role the target
	// lacks (the statement's other effects are replayed).
	OwnerChanges int
	// Notes say what the restore did differently from the source where
	// the target lacks something of the source's cluster (a tablespace).
	Notes     []string
	Jobs      int // pg_restore jobs the base was restored with
	Sequences int
	Took      time.Duration
}

// Run restores plan into the target. Every artifact is verified before the
// target is touched; an error leaves the target partial and says so.
func Run(ctx context.Context, meta store.Store, arts artifact.Store, sourceID int64, plan *Plan, opts Options) (Summary, error) {
	start := time.Now()
	sum := Summary{Base: plan.Base}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	report := func(pr Progress) {
		if opts.Progress != nil {
			pr.TotalBytes, pr.Elapsed = plan.SegmentBytes, time.Since(start)
			opts.Progress(pr)
		}
	}
	report(Progress{Phase: "verify"})
	// 1. Verify every artifact (DESIGN 4.3).
	if err := verify(ctx, arts, plan.Base.ArtifactKey, plan.Base.SHA256); err != nil {
		return sum, err
	}
	if err := verifyAll(ctx, arts, plan.Segments, opts.readAhead()); err != nil {
		return sum, err
	}
	// 2. The target: reachable, not the source, empty unless clean.
	conn, err := pgx.Connect(ctx, opts.TargetDSN)
	if err != nil {
		return sum, fmt.Errorf("connect to the target: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ti, err := inspectTarget(ctx, conn)
	if err != nil {
		return sum, err
	}
	if err := ti.refuse(store.Source{SystemIdentifier: opts.SourceSystemID, Database: opts.SourceDatabase}, opts.Clean); err != nil {
		return sum, err
	}
	// 3. pg_restore of the base. It must read the archive the base's
	// pg_dump wrote: at least that major (a newer target server is fine).
	prog, err := pgbin.Find(ctx, "pg_restore", dumpMajor(plan.Base.PgDumpVersion, ti.Major))
	if err != nil {
		return sum, fmt.Errorf("%w; nothing was written to the target", err)
	}
	if !opts.NoOwner {
		owners, err := archiveOwners(ctx, arts, plan.Base.ArtifactKey, prog)
		if err != nil {
			return sum, fmt.Errorf("base backup %s: %w; nothing was written to the target", plan.Base.ArtifactKey, err)
		}
		if err := checkOwners(ctx, conn, owners); err != nil {
			return sum, err
		}
	}
	report(Progress{Phase: "pg_restore"})
	jobs, why := opts.jobs(plan.Base.SizeBytes)
	if opts.Jobs == 0 && jobs > 1 && encryptedArtifact(ctx, arts, plan.Base.ArtifactKey) {
		// Parallel jobs read a decrypted local copy: only when asked.
		jobs, why = 1, "pg_restore runs as one job: the base backup is encrypted, and parallel jobs would need a decrypted copy of it in $TMPDIR (--jobs N makes one)"
	}
	if why != "" {
		opts.Log.Warn(why)
		sum.Notes = append(sum.Notes, why)
	}
	opts.Jobs, sum.Jobs = jobs, jobs
	if err := pgRestore(ctx, arts, plan.Base.ArtifactKey, opts, prog); err != nil {
		return sum, fmt.Errorf("pg_restore of base backup %s: %w (the target is partial)", plan.Base.ArtifactKey, err)
	}
	opts.Log.Info("base backup restored", "key", plan.Base.ArtifactKey)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&sum.LargeObjects); err != nil {
		return sum, fmt.Errorf("target: count large objects: %w (the target is partial)", err)
	}
	if err := dropCaptureObjects(ctx, conn, opts.SourcePublication); err != nil {
		return sum, fmt.Errorf("target: drop btfu's capture objects restored from the base backup: %w (the target is partial)", err)
	}
	// 4. Replay. Triggers do not fire (DESIGN 4.5); function bodies are
	// not checked against objects that captured DDL creates later, as
	// pg_restore does not check them.
	// Values are read in the settings the stream wrote them with
	// (sourcedb.TextFormSettings; restore does not import probe).
	// Row-level security never filters what replay changes: a restoring
	// role that policies would bind fails loudly instead.
	for _, s := range []string{"SET session_replication_role = replica", "SET check_function_bodies = off", "SET row_security = off",
		"SET datestyle = 'ISO, MDY'", "SET intervalstyle = postgres", "SET extra_float_digits = 3", "SET bytea_output = hex", "SET lc_monetary = 'C'"} {
		if _, err := conn.Exec(ctx, s); err != nil {
			return sum, fmt.Errorf("target: %s: %w", s, err)
		}
	}
	guard := newTriggerGuard()
	if err := guard.quiet(ctx, conn); err != nil {
		return sum, fmt.Errorf("target: %w (the target is partial: it holds the base backup)", err)
	}
	p := &replayer{conn: conn, base: plan.Base.ConsistentLSN, target: plan.Target, onDDLError: opts.OnDDLError, guard: guard, noOwner: opts.NoOwner}
	for _, g := range plan.JoinedThenDropped() {
		if p.gone == nil {
			p.gone = map[string]Gone{}
		}
		p.gone[g.Table] = g
	}
	if late := plan.LeftOut(); len(late) > 0 {
		p.leftOut = map[string]bool{}
		for _, c := range late {
			p.leftOut[c.Table] = true
			schema, name, _ := strings.Cut(c.Table, ".")
			var present bool
			if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgx.Identifier{schema, name}.Sanitize()).Scan(&present); err != nil {
				return sum, fmt.Errorf("target: %w", err)
			}
			why := plan.Describe(c)
			if !c.LeftOut {
				if present {
					why += "; it holds its rows as of the base backup, without later changes"
				} else {
					why += "; absent"
				}
				why += "; a restore to a point after a newer base backup includes it"
			}
			sum.LeftOut = append(sum.LeftOut, why)
			opts.Log.Warn("table left out of replay", "table", c.Table, "from_lsn", c.FromLSN.String())
		}
	}
	var done int64
	report(Progress{Phase: "replay"})
	defer tuneGCForReplay()()
	pf := prefetch(ctx, arts, plan.Segments, opts.readAhead())
	defer pf.Close()
	for _, s := range plan.Segments {
		if p.done {
			break
		}
		rc, err := pf.Next()
		if err == nil {
			var r *segment.Reader
			if r, err = segment.NewReader(rc); err == nil {
				err = p.segment(ctx, r)
				r.Close()
			}
			rc.Close()
		}
		if err != nil {
			if p.tx != nil {
				p.tx.Rollback(context.WithoutCancel(ctx))
			}
			// Best effort: a partial target keeps its triggers' states.
			_ = guard.restore(context.WithoutCancel(ctx), conn, true)
			return sum, fmt.Errorf("segment %s: %w (the target is partial: it holds the base backup and %d replayed transactions)", s.ArtifactKey, err, p.txs-int64(p.inBatch))
		}
		done += s.StoredBytes
		report(Progress{Phase: "replay", Bytes: done, Transactions: p.txs, LastLSN: p.lastLSN()})
	}
	if err := p.flush(ctx); err != nil {
		return sum, fmt.Errorf("commit replay: %w", err)
	}
	if err := guard.restore(ctx, conn, true); err != nil {
		return sum, fmt.Errorf("target: enable again the triggers replay disabled: %w", err)
	}
	sum.Transactions, sum.Rows, sum.CopiedRows, sum.NetRows, sum.NetFallbacks, sum.NetBatches = p.txs, p.rows, p.copied, p.netRows, p.netFallbacks, p.netBatches
	sum.SkippedDDL, sum.TempDDL, sum.OwnerChanges = p.skippedDDL, p.tempDDL, p.ownerDDL
	sum.Notes = append(sum.Notes, p.notes.list()...)
	sum.LeftOut = append(sum.LeftOut, p.invalid...)
	// 5. Sequences.
	report(Progress{Phase: "sequences", Bytes: done, Transactions: p.txs})
	n, err := setSequences(ctx, conn, meta, sourceID, plan)
	if err != nil {
		return sum, fmt.Errorf("set sequences: %w", err)
	}
	sum.Sequences = n
	sum.Took = time.Since(start)
	report(Progress{Phase: "done", Bytes: done, Transactions: p.txs})
	return sum, nil
}

// ErrCorruptArtifact: an artifact's checksum does not match its record.
var ErrCorruptArtifact = errors.New("artifact checksum mismatch")

func verify(ctx context.Context, arts artifact.Store, key, want string) error {
	if _, err := checkStored(ctx, arts, key, want, nil); err != nil {
		return fmt.Errorf("%w; nothing was written to the target", err)
	}
	return nil
}

// dumpMajor is the major of the pg_dump that wrote a base backup ("15.18"
// -> 15); fallback when the record does not say.
func dumpMajor(version string, fallback int) int {
	major, _, _ := strings.Cut(version, ".")
	if n, err := strconv.Atoi(major); err == nil && n > 0 {
		return n
	}
	return fallback
}

func pgRestore(ctx context.Context, arts artifact.Store, key string, opts Options, prog pgbin.Program) error {
	rc, err := arts.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	args := []string{"--exit-on-error", "-d", opts.TargetDSN}
	if opts.NoOwner {
		args = append(args, "--no-owner")
	}
	if opts.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	var in io.Reader = rc
	if opts.Jobs > 1 {
		// Parallel pg_restore needs a seekable archive: a local copy.
		f, err := os.CreateTemp(opts.TempDir, "btfu-restore-*.dump")
		if err != nil {
			return fmt.Errorf("local copy of the base backup for --jobs: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if _, err := io.Copy(f, rc); err != nil {
			return fmt.Errorf("local copy of the base backup for --jobs (in %s; set TMPDIR to a larger disk): %w", filepath.Dir(f.Name()), err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		args = append(args, "--jobs", strconv.Itoa(opts.Jobs), f.Name())
		in = nil
	}
	cmd := exec.CommandContext(ctx, prog.Path, args...)
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setSequences sets every sequence from the first snapshot taken at or
// after the target (else the newest), never behind the furthest value in
// a column it owns (the largest; the smallest for one that descends; a
// sequence that cycles is taken as the snapshot has it) (DESIGN 4.6).
func setSequences(ctx context.Context, conn *pgx.Conn, meta store.Store, sourceID int64, plan *Plan) (int, error) {
	snaps, err := meta.ListSequenceSnapshots(ctx, sourceID)
	if err != nil || len(snaps) == 0 {
		return 0, err
	}
	chosen := snaps[len(snaps)-1]
	for _, s := range snaps {
		t := plan.Target
		if (!t.Time.IsZero() && !s.TakenAt.Before(t.Time)) || (t.LSN != 0 && s.LSN >= t.LSN) {
			chosen = s
			break
		}
	}
	n := 0
	for _, v := range chosen.Values {
		name := pgx.Identifier{v.Schema, v.Name}.Sanitize()
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || !exists {
			continue
		}
		// The largest value in any column the sequence owns.
		var colMax *int64
		rows, err := conn.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(a.attname)
			FROM pg_depend d JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
			JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
			WHERE d.objid = $1::regclass AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`, name)
		if err != nil {
			return n, err
		}
		type col struct{ t, c string }
		var cols []col
		for rows.Next() {
			var c col
			if err := rows.Scan(&c.t, &c.c); err != nil {
				rows.Close()
				return n, err
			}
			cols = append(cols, c)
		}
		rows.Close()
		// A sequence that cycles hands out values again by design: the
		// column tells nothing then. One that descends has handed out
		// the column's smallest value last.
		var cycles, descends bool
		if err := conn.QueryRow(ctx, "SELECT seqcycle, seqincrement < 0 FROM pg_sequence WHERE seqrelid = $1::regclass", name).Scan(&cycles, &descends); err != nil {
			return n, fmt.Errorf("read sequence %s: %w", name, err)
		}
		agg := "max"
		if descends {
			agg = "min"
		}
		for _, c := range cols {
			if cycles {
				break
			}
			var m *int64
			if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT %s(%s)::bigint FROM %s", agg, c.c, c.t)).Scan(&m); err == nil && m != nil &&
				(colMax == nil || (!descends && *m > *colMax) || (descends && *m < *colMax)) {
				colMax = m
			}
		}
		val, called := v.LastValue, v.IsCalled
		if colMax != nil && ((!descends && *colMax > val) || (descends && *colMax < val) || (*colMax == val && !called)) {
			val, called = *colMax, true
		}
		if _, err := conn.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", name, val, called); err != nil {
			return n, fmt.Errorf("setval %s: %w", name, err)
		}
		n++
	}
	return n, nil
}

// dropCaptureObjects removes from the target what btfu put on the source
// and pg_dump copied: the btfu schema with the DDL-capture functions and
// their event triggers, and btfu's publication.
func dropCaptureObjects(ctx context.Context, conn *pgx.Conn, publication string) error {
	// The event triggers depend on their functions in the schema: CASCADE
	// drops them too.
	stmts := []string{"DROP SCHEMA IF EXISTS " + pgx.Identifier{captureSchema}.Sanitize() + " CASCADE"}
	if publication != "" {
		stmts = append(stmts, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{publication}.Sanitize())
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// captureSchema holds btfu's DDL-capture objects on the source
// (sourcedb.DDLSchema; restore does not import probe).
const captureSchema = "btfu"
