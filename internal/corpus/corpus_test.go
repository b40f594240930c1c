package corpus

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/internal/pgtest"
)

// Environment knobs (make test-corpus sets the first three):
//
//	BTFU_CORPUS=1               run at all (else the test skips: it is a separate command)
//	BTFU_CORPUS_SUITE=DIR       the suite (scripts/corpus-setup.sh prints it; run when unset)
//	BTFU_CORPUS_RESTORE=1       also restore and compare (make test-corpus: CORPUS_RESTORE, 1 unless set to 0)
//	BTFU_CORPUS_RUNS="default,full" the protected runs (both unless set)
//	BTFU_CORPUS_FILES="a,b"     only these test files (test_setup is always run first)
//	BTFU_CORPUS_CONFIG_EXTRA=.. TOML lines appended to btfu's [[source]] table, in every run
//	                            (not tables_without_key: the runs set it)
//	BTFU_CORPUS_RESTORE_ARGS=.. more arguments for btfu restore (after --on-ddl-error=skip)
//	BTFU_CORPUS_KEEP=1          keep clusters, outputs and btfu's directories; print their paths
//	BTFU_CORPUS_TIMEOUT=120s    per test file
//	BTFU_CORPUS_BIN=PATH        run this btfu binary instead of building the module
const (
	envEnable  = "BTFU_CORPUS"
	envSuite   = "BTFU_CORPUS_SUITE"
	envFiles   = "BTFU_CORPUS_FILES"
	envExtra   = "BTFU_CORPUS_CONFIG_EXTRA"
	envRestore = "BTFU_CORPUS_RESTORE"
	envRuns    = "BTFU_CORPUS_RUNS"
	envKeep    = "BTFU_CORPUS_KEEP"
	envTimeout = "BTFU_CORPUS_TIMEOUT"
	envBin     = "BTFU_CORPUS_BIN"
	envRArgs   = "BTFU_CORPUS_RESTORE_ARGS"
)

const regressionDB = "regression"

// regressSettings are what pg_regress adds to its temporary instance's
// postgresql.conf (PostgreSQL 15), on top of pgtest's logical-replication
// defaults, which both clusters share.
var regressSettings = map[string]string{
	"log_autovacuum_min_duration": "0",
	"log_checkpoints":             "on",
	"log_line_prefix":             "%m %b[%p] %q%a ",
	"log_lock_waits":              "on",
	"log_temp_files":              "128kB",
	"max_prepared_transactions":   "2",
}

// createRegressionDB creates the database as pg_regress's create_database
// does: from template0, with its per-database settings.
func createRegressionDB(ctx context.Context, c *pgtest.Cluster) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	db := pgx.Identifier{regressionDB}.Sanitize()
	stmts := []string{
		"CREATE DATABASE " + db + " TEMPLATE=template0",
		"ALTER DATABASE " + db + " SET lc_messages TO 'C'",
		"ALTER DATABASE " + db + " SET lc_monetary TO 'C'",
		"ALTER DATABASE " + db + " SET lc_numeric TO 'C'",
		"ALTER DATABASE " + db + " SET lc_time TO 'C'",
		"ALTER DATABASE " + db + " SET bytea_output TO 'hex'",
		"ALTER DATABASE " + db + " SET timezone_abbreviations TO 'Default'",
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// protectedRun is one configuration of btfu the suite runs under.
type protectedRun struct {
	Label string // "default", "full"
	// Config are the [[source]] lines this run adds.
	Config string
	Mode   Mode
	// FirstBase: also restore the latest state from the chain's first
	// base backup, which replays the whole suite.
	FirstBase bool
}

// protectedRuns are the runs: btfu's default configuration (tables
// without a key are left out), and tables_without_key =
// "replica_identity_full", under which every table is backed up.
var protectedRuns = []protectedRun{
	{Label: "default", Mode: Mode{KeylessLeftOut: true}},
	{Label: "full", Config: `tables_without_key = "replica_identity_full"`, FirstBase: true},
}

// selectRuns keeps the runs named in only (comma or space separated; all
// when empty).
func selectRuns(only string) ([]protectedRun, error) {
	want := strings.FieldsFunc(only, func(r rune) bool { return r == ',' || r == ' ' })
	if len(want) == 0 {
		return protectedRuns, nil
	}
	var out []protectedRun
	for _, w := range want {
		found := false
		for _, r := range protectedRuns {
			if r.Label == w {
				out, found = append(out, r), true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: unknown run %q (default, full)", envRuns, w)
		}
	}
	return out, nil
}

// corpus is what the runs of one TestCorpus share.
type corpus struct {
	ctx        context.Context
	suite      Suite
	files      []string
	mid        int // the mid-schedule snapshot is taken before files[mid]
	timeout    time.Duration
	work       string
	keep       bool
	doRestore  bool
	bin        string
	plain      *pgtest.Cluster
	plainRuns  []FileResult
	plainTook  time.Duration
	timeline   *Timeline
	clustersMu sync.Mutex
	clusters   []*pgtest.Cluster
}

// TestCorpus runs PostgreSQL's regression suite against a plain cluster
// and, once per protected run, against a cluster whose regression
// database btfu (the real binary, superuser) protects: with its default
// configuration and with tables_without_key = "replica_identity_full".
// Each run fails when a file has more errors or times out with btfu, or
// when btfu's coverage does not reach the end of the suite. With
// BTFU_CORPUS_RESTORE=1 each run also restores the latest state and a
// mid-schedule LSN (the full run also the latest state from its first
// base backup, replaying the whole suite) into fresh databases of the
// plain cluster and compares them with the source (compare.go: every
// table equal, or LEFT OUT for a documented reason, or an inheritance
// child whose columns pg_dump reorders; every object present; no
// sequence behind; no skipped DDL but GRANTs to roles gone).
func TestCorpus(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skip("the corpus test runs PostgreSQL's regression suite with and without btfu; run it with make test-corpus")
	}
	c := &corpus{ctx: context.Background(), keep: os.Getenv(envKeep) == "1", doRestore: os.Getenv(envRestore) == "1",
		timeout: 120 * time.Second, timeline: NewTimeline()}
	if v := os.Getenv(envTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envTimeout, v, err)
		}
		c.timeout = d
	}
	runs, err := selectRuns(os.Getenv(envRuns))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	c.suite = setupSuite(t)
	schedule, err := ReadSchedule(filepath.Join(c.suite.Dir, "parallel_schedule"))
	if err != nil {
		t.Fatal(err)
	}
	only := os.Getenv(envFiles)
	if only != "" && !strings.Contains(","+strings.ReplaceAll(only, " ", ",")+",", ",test_setup,") {
		only = "test_setup," + only // every file needs the tables it creates
	}
	if c.files, err = SelectFiles(schedule, only); err != nil {
		t.Fatal(err)
	}
	c.mid = len(c.files) / 2

	if c.work, err = os.MkdirTemp("", "btfu-corpus-"); err != nil {
		t.Fatal(err)
	}
	// The server (the postgres OS user under root) writes into the
	// results directories below.
	if err := os.Chmod(c.work, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(t) })
	// Registered after the clean-up, so it runs before it.
	t.Cleanup(func() { t.Log("\n" + c.timeline.String()) })
	c.bin = os.Getenv(envBin)
	if c.bin == "" {
		if c.bin, err = Build(c.ctx, "../..", filepath.Join(c.work, "bin")); err != nil {
			t.Fatal(err)
		}
	}
	c.timeline.Since("set-up (suite, build btfu)", start)
	labels := make([]string, len(runs))
	for i, r := range runs {
		labels[i] = r.Label
	}
	t.Logf("suite %s (PostgreSQL %s): %d files, %s per file at most; protected runs: %s; restore comparison %s", c.suite.Dir, suiteVersion(c.suite), len(c.files), c.timeout,
		strings.Join(labels, ", "), map[bool]string{true: "on", false: "off"}[c.doRestore])

	// The plain run.
	start = time.Now()
	c.plain = c.startCluster(t, "plain")
	plainTarget := c.target(t, "plain", c.plain)
	c.plainRuns = c.suite.Run(c.ctx, plainTarget, RunOptions{Files: c.files, Timeout: c.timeout, After: c.progress(t, "plain"),
		Before: func(i int, _ string) {
			// The same reads as on the btfu clusters, so the runs differ
			// in btfu alone (the stats test counts scans).
			if c.doRestore && i == c.mid {
				if _, err := TakeSnapshot(c.ctx, c.plain.DSN(regressionDB)); err != nil {
					t.Logf("plain: mid-schedule snapshot: %v", err)
				}
			}
		}})
	c.plainTook = c.timeline.Since("plain: suite", start)
	t.Logf("plain run took %s", c.plainTook.Round(time.Second))

	for _, r := range runs {
		t.Run(r.Label, func(t *testing.T) { c.protected(t, r) })
	}
	if !c.doRestore {
		t.Logf("restore comparison: NOT RUN (set %s=1, or make test-corpus without CORPUS_RESTORE=0, to restore and compare with the source)", envRestore)
	}
}

func (c *corpus) cleanup(t *testing.T) {
	c.clustersMu.Lock()
	defer c.clustersMu.Unlock()
	for _, cl := range c.clusters {
		if c.keep {
			_ = cl.StopServer()
			// Without its owner file, the next pgtest.Start does not
			// clean the directory up as left by a crash.
			_ = os.Remove(filepath.Join(cl.BaseDir, "owner.pid"))
			// The settings that pgtest passes on the command line and
			// the data directory needs; a new log file, since the first
			// one belongs to this process's user.
			t.Logf("kept cluster %s (port %d): start it again with: su postgres -c '%s/pg_ctl -D %s -o \"-p %d -c unix_socket_directories=%s -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c max_prepared_transactions=2\" -l %s start'",
				cl.BaseDir, cl.Port, cl.BinDir, cl.DataDir, cl.Port, cl.SockDir, filepath.Join(cl.BaseDir, "server.kept.log"))
		} else {
			_ = cl.Stop()
		}
	}
	if c.keep {
		t.Logf("kept outputs and btfu's directories in %s", c.work)
	} else {
		os.RemoveAll(c.work)
	}
}

func (c *corpus) startCluster(t *testing.T, label string) *pgtest.Cluster {
	t.Helper()
	cl, err := pgtest.Start(pgtest.Options{Settings: regressSettings})
	if err != nil {
		t.Fatalf("start %s cluster: %v", label, err)
	}
	c.clustersMu.Lock()
	c.clusters = append(c.clusters, cl)
	c.clustersMu.Unlock()
	if want := strconv.Itoa(cl.Major) + "."; !strings.HasPrefix(suiteVersion(c.suite), want) {
		t.Fatalf("the suite in %s is of PostgreSQL %s, the server is %s", c.suite.Dir, suiteVersion(c.suite), cl.Version)
	}
	if err := createRegressionDB(c.ctx, cl); err != nil {
		t.Fatalf("%s cluster: create the regression database: %v", label, err)
	}
	return cl
}

func (c *corpus) target(t *testing.T, label string, cl *pgtest.Cluster) Target {
	t.Helper()
	dir := filepath.Join(c.work, label)
	if err := os.MkdirAll(filepath.Join(dir, "results"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "results"), 0o777); err != nil {
		t.Fatal(err)
	}
	return Target{Label: label, PSQL: filepath.Join(cl.BinDir, "psql"), SockDir: cl.SockDir, Port: cl.Port,
		DB: regressionDB, AdminDSN: cl.DSN("postgres"), BuildDir: dir}
}

func (c *corpus) progress(t *testing.T, label string) func(int, FileResult) {
	return func(i int, r FileResult) {
		switch {
		case r.TimedOut:
			t.Logf("%s: %s TIMED OUT after %s", label, r.Name, r.Took.Round(time.Second))
		case r.RunErr != "":
			t.Logf("%s: %s: %s", label, r.Name, r.RunErr)
		case (i+1)%50 == 0 || i+1 == len(c.files):
			t.Logf("%s: %d/%d files (%s)", label, i+1, len(c.files), r.Name)
		}
	}
}

// protected runs the suite against a new cluster that btfu protects with
// run's configuration, checks do no harm and coverage, and restores and
// compares.
func (c *corpus) protected(t *testing.T, run protectedRun) {
	label := "btfu-" + run.Label
	start := time.Now()
	src := c.startCluster(t, label)
	srcTarget := c.target(t, label, src)
	bdir := filepath.Join(c.work, label+"-home")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	extra := strings.TrimSpace(run.Config + "\n" + os.Getenv(envExtra))
	b, err := NewBtfu(c.bin, bdir, Config(bdir, "regression", src.DSN(regressionDB), extra))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopBtfu := func() {
		if stopped {
			return
		}
		stopped = true
		if err := b.Stop(60 * time.Second); err != nil {
			t.Logf("FINDING: %v", err)
		}
	}
	t.Cleanup(stopBtfu)
	if extra != "" {
		t.Logf("btfu [[source]] extra lines:\n%s", extra)
	}
	st, err := b.WaitStreaming(c.ctx, 3*time.Minute)
	if err != nil {
		logBtfu(t, b, src, c.plain.LogFile)
		t.Fatalf("btfu: %v", err)
	}
	c.timeline.Since(run.Label+": cluster, btfu's first base backup", start)
	firstBase := ""
	if st.LastBackup != nil && st.BaseBackups == 1 {
		firstBase = st.LastBackup.Key
	}
	t.Logf("btfu streaming (flushed %s, %d base backup(s), first %q); running the suite", st.FlushedLSN, st.BaseBackups, firstBase)

	w := startWatch(c.ctx, b)
	var midSnap *Snapshot
	start = time.Now()
	results := c.suite.Run(c.ctx, srcTarget, RunOptions{Files: c.files, Timeout: c.timeout, After: c.progress(t, label),
		Before: func(i int, name string) {
			w.setFile(name)
			if c.doRestore && i == c.mid {
				s, err := TakeSnapshot(c.ctx, src.DSN(regressionDB))
				if err != nil {
					t.Errorf("mid-schedule snapshot: %v", err)
					return
				}
				midSnap = s
				t.Logf("mid-schedule mark before %s (file %d of %d): LSN %s, %d tables (read in %s)", name, i+1, len(c.files), s.LSN, len(s.Tables), s.Took.Round(time.Millisecond))
			}
		}})
	took := c.timeline.Since(run.Label+": suite with btfu", start)
	w.setFile("(after the suite)")
	endLSN := src.CurrentLSN(t)
	t.Logf("btfu run took %s; source at %s after the suite", took.Round(time.Second), endLSN)

	files := CompareRuns(c.plainRuns, results)
	t.Run("do no harm", func(t *testing.T) {
		t.Log("\n" + Report(files, c.plainTook, took))
		for _, f := range files {
			if f.Harmful() {
				t.Errorf("%s: %d errors plain, %d with btfu%s", f.Name, len(f.Plain.Errors), len(f.Btfu.Errors), timedOut(f.Btfu))
			}
		}
	})

	start = time.Now()
	covered := t.Run("coverage", func(t *testing.T) {
		deadline := time.Now().Add(3 * time.Minute)
		var s SourceStatus
		for {
			var err error
			s, err = b.Source(c.ctx)
			if err == nil && CoverageEnd(s) >= endLSN {
				t.Logf("coverage reaches %s (the source's LSN after the suite: %s)", CoverageEnd(s), endLSN)
				return
			}
			if done, werr := b.Exited(); done {
				t.Fatalf("btfu exited (%v) with coverage at %s, the source at %s", werr, CoverageEnd(s), endLSN)
			}
			if time.Now().After(deadline) {
				end := CoverageEnd(s)
				t.Fatalf("coverage did not reach the end of the suite within 3 minutes: it ends at %s, the source is at %s (gap %s); flushed %s, state %q, attention %q, last error %q (status error: %v)",
					end, endLSN, humanBytes(int64(endLSN)-int64(end)), s.FlushedLSN, s.State, s.Attention, s.LastError, err)
			}
			time.Sleep(time.Second)
		}
	})
	c.timeline.Since(run.Label+": coverage reaches the end of the suite", start)

	w.stop()
	t.Log("\n" + w.report())
	logBtfu(t, b, src, c.plain.LogFile)

	if !c.doRestore {
		return
	}
	if !covered {
		t.Log("restoring anyway, though coverage did not reach the end of the suite")
	}
	start = time.Now()
	endSnap, err := TakeSnapshot(c.ctx, src.DSN(regressionDB))
	if err != nil {
		t.Fatalf("snapshot of the source after the suite: %v", err)
	}
	c.timeline.Since(run.Label+": snapshot of the source after the suite", start)
	t.Logf("source after the suite: LSN %s, %d tables (read in %s)", endSnap.LSN, len(endSnap.Tables), endSnap.Took.Round(time.Millisecond))
	c.restoreAndCompare(t, b, run, "latest", []string{"--latest"}, endSnap)
	if run.FirstBase {
		if firstBase == "" {
			t.Errorf("restore first-base: btfu's status named no single first base backup when streaming began (%d base backups, last %+v)", st.BaseBackups, st.LastBackup)
		} else {
			c.restoreAndCompare(t, b, run, "first-base", []string{"--latest", "--base", firstBase}, endSnap)
		}
	}
	if midSnap == nil {
		t.Error("restore mid: no mid-schedule snapshot was taken")
	} else {
		c.restoreAndCompare(t, b, run, "mid", []string{"--lsn", midSnap.LSN}, midSnap)
	}
	stopBtfu()
	if !c.keep {
		_ = src.Stop() // the next run needs the memory more
	}
}

// restoreAndCompare restores into a fresh database of the plain cluster
// (which holds the roles the suite left, as the source's cluster does),
// going on past DDL that fails (--on-ddl-error=skip), and compares it
// with want (compare.go).
func (c *corpus) restoreAndCompare(t *testing.T, b *Btfu, run protectedRun, label string, args []string, want *Snapshot) {
	t.Run("restore "+label, func(t *testing.T) {
		db := "restore_" + run.Label + "_" + strings.ReplaceAll(label, "-", "_")
		c.plain.Exec(t, "postgres", "CREATE DATABASE "+db+" TEMPLATE=template0")
		// The source's roles first, as a user does before a restore.
		roles, err := SuiteRoles(c.suite.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := CreateRoles(c.ctx, c.plain.DSN("postgres"), roles); err != nil {
			t.Fatal(err)
		}
		full := append(append([]string{"restore"}, args...), "--target", c.plain.DSN(db), "--yes", "--on-ddl-error=skip")
		full = append(full, strings.Fields(os.Getenv(envRArgs))...)
		r, err := b.Run(c.ctx, 30*time.Minute, full...)
		c.timeline.Phase(fmt.Sprintf("%s: restore %s", run.Label, label), r.Took)
		t.Logf("btfu %s: exit %d after %s\n%s%s", strings.Join(full, " "), r.Code, r.Took.Round(100*time.Millisecond), fewLeftOut(r.Stdout, 10), withoutProgress(r.Stderr))
		for i, a := range args {
			if a == "--base" && i+1 < len(args) && !strings.Contains(r.Stdout, "base backup  "+args[i+1]) {
				t.Errorf("restore %s %s did not use the base backup asked for (%s)", run.Label, label, args[i+1])
			}
		}
		outcome := RestoreOutcome{Run: run.Label, Label: label, Took: r.Took}
		switch {
		case err != nil:
			outcome.Err = err.Error()
		case r.Code == 1 && strings.Contains(r.Stderr, "restored, but"):
			// LEFT OUT tables or skipped DDL: compared below.
		case r.Code != 0:
			outcome.Err = fmt.Sprintf("exit %d: %s", r.Code, RestoreError(r.Stderr))
		}
		if outcome.Err != "" {
			c.timeline.Restore(outcome)
			t.Fatalf("restore %s %s failed, not compared: %s", run.Label, label, outcome.Err)
		}
		start := time.Now()
		got, err := TakeSnapshot(c.ctx, c.plain.DSN(db))
		if err != nil {
			t.Fatalf("snapshot of the restore: %v", err)
		}
		cmp := Compare(want, got, ParseRestoreOutput(r.Stdout), run.Mode)
		outcome.Compared = &cmp
		c.timeline.Restore(outcome)
		c.timeline.Since(fmt.Sprintf("%s: snapshot and comparison of restore %s", run.Label, label), start)
		t.Logf("restore %s %s (source at %s) compared with the source:\n%s", run.Label, label, want.LSN, cmp.Summary())
		if f := cmp.Failures(); len(f) > 0 {
			if len(f) > 40 {
				f = append(f[:40], fmt.Sprintf("... and %d more (see the comparison above)", len(f)-40))
			}
			t.Errorf("restore %s %s: %d tables equal, %d LEFT OUT and %d column order differs (accepted), %d failures:\n  %s",
				run.Label, label, cmp.Count(Equal), cmp.Count(LeftOut), cmp.Count(ColumnOrder), len(cmp.Failures()), strings.Join(f, "\n  "))
		}
	})
}

// fewLeftOut keeps the first n "LEFT OUT" lines of a restore's output
// and counts the others (the comparison below marks every such table).
func fewLeftOut(stdout string, n int) string {
	var keep []string
	more := 0
	for _, l := range strings.SplitAfter(stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "LEFT OUT") {
			if n == 0 {
				more++
				continue
			}
			n--
		}
		keep = append(keep, l)
	}
	out := strings.Join(keep, "")
	if more > 0 {
		out += fmt.Sprintf("  ... and %d more LEFT OUT lines\n", more)
	}
	return out
}

// withoutProgress drops the JSON restore-progress lines but the last.
func withoutProgress(stderr string) string {
	var keep []string
	last := ""
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `"msg":"restore progress"`) {
			last = l
			continue
		}
		if strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	if last != "" {
		keep = append(keep, last)
	}
	if len(keep) == 0 {
		return ""
	}
	return strings.Join(keep, "\n") + "\n"
}

// setupSuite finds the suite: $BTFU_CORPUS_SUITE, else what
// scripts/corpus-setup.sh prints (cached after its first run).
func setupSuite(t *testing.T) Suite {
	t.Helper()
	dir := os.Getenv(envSuite)
	if dir == "" {
		cmd := exec.Command("../../scripts/corpus-setup.sh")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("scripts/corpus-setup.sh: %v (run make test-corpus, or the script as root once)", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	s, err := SuiteAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func suiteVersion(s Suite) string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(s.Dir), "VERSION"))
	return strings.TrimSpace(string(b))
}

// logBtfu prints btfu's status, its slot on the source, its WARN and
// ERROR log lines, the source's server log lines of btfu's sessions and
// the lock waits.
func logBtfu(t *testing.T, b *Btfu, src *pgtest.Cluster, plainLog string) {
	t.Helper()
	ctx := context.Background()
	var sb strings.Builder
	if s, err := b.Source(ctx); err != nil {
		fmt.Fprintf(&sb, "btfu status: %v\n", err)
	} else {
		fmt.Fprintf(&sb, "btfu status: state %s, streaming %v, flushed %s, source %s, %d base backup(s), %d segments (%s), coverage to %s\n",
			s.State, s.Streaming, s.FlushedLSN, s.SourceLSN, s.BaseBackups, s.Segments, humanBytes(s.SegmentBytes), CoverageEnd(s))
		if s.RetainedBytes != nil {
			fmt.Fprintf(&sb, "  retained WAL (btfu's view): %s of a %s budget\n", humanBytes(*s.RetainedBytes), humanBytes(s.WALBudget))
		}
		if s.Attention != "" {
			fmt.Fprintf(&sb, "  attention: %s\n", s.Attention)
		}
		if s.LastError != "" {
			fmt.Fprintf(&sb, "  last error: %s\n", s.LastError)
		}
	}
	fmt.Fprintf(&sb, "replication slots on the source:\n%s", slots(ctx, src))
	lines := b.LogLines("WARN", "ERROR")
	groups := GroupLog(lines)
	fmt.Fprintf(&sb, "btfu log (%s): %d WARN/ERROR lines, %d kinds of message\n", b.LogPath, len(lines), len(groups))
	for _, g := range groups {
		if g.Count == 1 {
			fmt.Fprintf(&sb, "  %s\n", cut(g.First.Raw, 1000))
		} else {
			fmt.Fprintf(&sb, "  %dx, first: %s\n        last: %s\n", g.Count, cut(g.First.Raw, 1000), cut(g.Last.Raw, 1000))
		}
	}
	other, waits := ServerLogLines(src.LogFile, plainLog)
	fmt.Fprintf(&sb, "source server log (%s): %d WARNING/ERROR/FATAL lines outside the suite's sessions and not in the plain run's log (btfu's sessions, walsenders, server processes)\n", src.LogFile, len(other))
	for i, l := range other {
		if i == 200 {
			fmt.Fprintf(&sb, "  ... %d more\n", len(other)-i)
			break
		}
		fmt.Fprintf(&sb, "  %s\n", l)
	}
	fmt.Fprintf(&sb, "lock waits on the source: %d\n", len(waits))
	for i, l := range waits {
		if i == 50 {
			fmt.Fprintf(&sb, "  ... %d more\n", len(waits)-i)
			break
		}
		fmt.Fprintf(&sb, "  %s\n", l)
	}
	t.Log("\n" + sb.String())
}

func slots(ctx context.Context, c *pgtest.Cluster) string {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Sprintf("  %v\n", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT slot_name, coalesce(plugin, ''), coalesce(database, ''), active, coalesce(wal_status, ''),
		coalesce(restart_lsn::text, ''), coalesce(confirmed_flush_lsn::text, ''),
		coalesce((pg_current_wal_lsn() - restart_lsn)::bigint, 0), coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, 0)
		FROM pg_replication_slots ORDER BY 1`)
	if err != nil {
		return fmt.Sprintf("  %v\n", err)
	}
	defer rows.Close()
	var sb strings.Builder
	for rows.Next() {
		var name, plugin, db, status, restart, confirmed string
		var active bool
		var retained, behind int64
		if err := rows.Scan(&name, &plugin, &db, &active, &status, &restart, &confirmed, &retained, &behind); err != nil {
			return sb.String() + fmt.Sprintf("  %v\n", err)
		}
		fmt.Fprintf(&sb, "  %s (%s, db %s): active %v, wal_status %s, restart %s, confirmed %s; retains %s, confirmed is %s behind\n",
			name, plugin, db, active, status, restart, confirmed, humanBytes(retained), humanBytes(behind))
	}
	if sb.Len() == 0 {
		return "  none\n"
	}
	return sb.String()
}

// watch samples btfu's status every 2 seconds while the suite runs and
// notes every change of state, attention or last error with the test
// file running at the time, and the file during which the flushed LSN
// last moved.
type watch struct {
	b      *Btfu
	file   atomic.Pointer[string]
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	events      []string
	lastFlushed string
	movedAt     time.Time
	movedIn     string
	maxLag      int64
	maxLagIn    string
	samples     int
	statusErrs  int
}

func startWatch(ctx context.Context, b *Btfu) *watch {
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{b: b, cancel: cancel, done: make(chan struct{})}
	w.setFile("(before the suite)")
	go w.loop(ctx)
	return w
}

func (w *watch) setFile(name string) { w.file.Store(&name) }

func (w *watch) loop(ctx context.Context) {
	defer close(w.done)
	var prev *SourceStatus
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		s, err := w.b.Source(ctx)
		file := *w.file.Load()
		now := time.Now()
		w.mu.Lock()
		w.samples++
		if err != nil && ctx.Err() == nil {
			w.statusErrs++
			if w.statusErrs <= 3 {
				w.events = append(w.events, fmt.Sprintf("%s during %s: status failed: %v", now.Format("15:04:05"), file, err))
			}
		}
		if err == nil {
			if prev == nil || s.State != prev.State || s.Streaming != prev.Streaming || sameGist(s.Attention) != sameGist(prev.Attention) || sameGist(s.LastError) != sameGist(prev.LastError) {
				w.events = append(w.events, fmt.Sprintf("%s during %s: state %s (streaming %v), flushed %s, attention %q, last error %q",
					now.Format("15:04:05"), file, s.State, s.Streaming, s.FlushedLSN, s.Attention, s.LastError))
			}
			if s.FlushedLSN != w.lastFlushed {
				w.lastFlushed, w.movedAt, w.movedIn = s.FlushedLSN, now, file
			}
			if s.LagBytes != nil && *s.LagBytes > w.maxLag {
				w.maxLag, w.maxLagIn = *s.LagBytes, file
			}
			p := s
			prev = &p
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sameGist is an attention or error line without its numbers and cut
// short: "75 table(s) NOT backed up: a, b" and "99 table(s) NOT backed
// up: a, c" are the same news.
func sameGist(s string) string {
	return cut(number.ReplaceAllString(s, "N"), 48)
}

func (w *watch) stop() {
	w.cancel()
	<-w.done
}

func (w *watch) report() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "btfu during the suite (%d status samples, %d failed):\n", w.samples, w.statusErrs)
	for _, e := range w.events {
		fmt.Fprintf(&sb, "  %s\n", e)
	}
	fmt.Fprintf(&sb, "  flushed LSN last moved at %s during %s (to %s)\n", w.movedAt.Format("15:04:05"), w.movedIn, w.lastFlushed)
	if w.maxLagIn != "" {
		fmt.Fprintf(&sb, "  largest lag: %s during %s\n", humanBytes(w.maxLag), w.maxLagIn)
	}
	return sb.String()
}

func humanBytes(n int64) string {
	switch {
	case n < 0:
		return "-" + humanBytes(-n)
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2fGiB", float64(n)/(1<<30))
}
