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

// Environment knobs (make test-corpus sets the first one):
//
//	BTFU_CORPUS=1               run at all (else the test skips: it is a separate command)
//	BTFU_CORPUS_SUITE=DIR       the suite (scripts/corpus-setup.sh prints it; run when unset)
//	BTFU_CORPUS_FILES="a,b"     only these test files (test_setup is always run first)
//	BTFU_CORPUS_CONFIG_EXTRA=.. TOML lines appended to btfu's [[source]] table
//	BTFU_CORPUS_RESTORE=1       also restore (latest and mid-schedule LSN) and compare
//	BTFU_CORPUS_KEEP=1          keep clusters, outputs and btfu's directory; print their paths
//	BTFU_CORPUS_TIMEOUT=120s    per test file
//	BTFU_CORPUS_BIN=PATH        run this btfu binary instead of building the module
const (
	envEnable  = "BTFU_CORPUS"
	envSuite   = "BTFU_CORPUS_SUITE"
	envFiles   = "BTFU_CORPUS_FILES"
	envExtra   = "BTFU_CORPUS_CONFIG_EXTRA"
	envRestore = "BTFU_CORPUS_RESTORE"
	envKeep    = "BTFU_CORPUS_KEEP"
	envTimeout = "BTFU_CORPUS_TIMEOUT"
	envBin     = "BTFU_CORPUS_BIN"
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

// TestCorpus runs PostgreSQL's regression suite against a plain cluster
// and against a cluster whose regression database btfu (the real binary,
// default configuration, superuser) protects, and fails when a file has
// more errors or times out with btfu, or when btfu's coverage does not
// reach the end of the suite. With BTFU_CORPUS_RESTORE=1 it also restores
// the latest state and a mid-schedule LSN and compares them with the
// source.
func TestCorpus(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skip("the corpus test runs PostgreSQL's regression suite with and without btfu; run it with make test-corpus")
	}
	ctx := context.Background()
	keep := os.Getenv(envKeep) == "1"
	doRestore := os.Getenv(envRestore) == "1"
	timeout := 120 * time.Second
	if v := os.Getenv(envTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envTimeout, v, err)
		}
		timeout = d
	}

	suite := setupSuite(t)
	schedule, err := ReadSchedule(filepath.Join(suite.Dir, "parallel_schedule"))
	if err != nil {
		t.Fatal(err)
	}
	only := os.Getenv(envFiles)
	if only != "" && !strings.Contains(","+strings.ReplaceAll(only, " ", ",")+",", ",test_setup,") {
		only = "test_setup," + only // every file needs the tables it creates
	}
	files, err := SelectFiles(schedule, only)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(files) / 2

	work, err := os.MkdirTemp("", "btfu-corpus-")
	if err != nil {
		t.Fatal(err)
	}
	// The server (the postgres OS user under root) writes into the
	// results directories below.
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	var clusters []*pgtest.Cluster
	t.Cleanup(func() {
		for _, c := range clusters {
			if keep {
				_ = c.StopServer()
				// Without its owner file, the next pgtest.Start does not
				// clean the directory up as left by a crash.
				_ = os.Remove(filepath.Join(c.BaseDir, "owner.pid"))
				t.Logf("kept cluster %s (port %d): start it again with: su postgres -c '%s/pg_ctl -D %s -o \"-p %d -c unix_socket_directories=%s\" -l %s start'",
					c.BaseDir, c.Port, c.BinDir, c.DataDir, c.Port, c.SockDir, c.LogFile)
			} else {
				_ = c.Stop()
			}
		}
		if keep {
			t.Logf("kept outputs and btfu's directory in %s", work)
		} else {
			os.RemoveAll(work)
		}
	})
	startCluster := func(label string) *pgtest.Cluster {
		t.Helper()
		c, err := pgtest.Start(pgtest.Options{Settings: regressSettings})
		if err != nil {
			t.Fatalf("start %s cluster: %v", label, err)
		}
		clusters = append(clusters, c)
		if want := strconv.Itoa(c.Major) + "."; !strings.HasPrefix(suiteVersion(suite), want) {
			t.Fatalf("the suite in %s is of PostgreSQL %s, the server is %s", suite.Dir, suiteVersion(suite), c.Version)
		}
		if err := createRegressionDB(ctx, c); err != nil {
			t.Fatalf("%s cluster: create the regression database: %v", label, err)
		}
		return c
	}
	target := func(label string, c *pgtest.Cluster) Target {
		t.Helper()
		dir := filepath.Join(work, label)
		if err := os.MkdirAll(filepath.Join(dir, "results"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "results"), 0o777); err != nil {
			t.Fatal(err)
		}
		return Target{Label: label, PSQL: filepath.Join(c.BinDir, "psql"), SockDir: c.SockDir, Port: c.Port,
			DB: regressionDB, AdminDSN: c.DSN("postgres"), BuildDir: dir}
	}
	progress := func(label string) func(int, FileResult) {
		return func(i int, r FileResult) {
			switch {
			case r.TimedOut:
				t.Logf("%s: %s TIMED OUT after %s", label, r.Name, r.Took.Round(time.Second))
			case r.RunErr != "":
				t.Logf("%s: %s: %s", label, r.Name, r.RunErr)
			case (i+1)%25 == 0 || i+1 == len(files):
				t.Logf("%s: %d/%d files (%s)", label, i+1, len(files), r.Name)
			}
		}
	}
	t.Logf("suite %s (PostgreSQL %s): %d files, %s per file at most; restore comparison %s", suite.Dir, suiteVersion(suite), len(files), timeout,
		map[bool]string{true: "on", false: "off"}[doRestore])

	// (a) plain.
	plain := startCluster("plain")
	plainTarget := target("plain", plain)
	start := time.Now()
	plainResults := suite.Run(ctx, plainTarget, RunOptions{Files: files, Timeout: timeout, After: progress("plain"),
		Before: func(i int, _ string) {
			// The same reads as on the btfu cluster, so the runs differ
			// in btfu alone (the stats test counts scans).
			if doRestore && i == mid {
				if _, err := TakeSnapshot(ctx, plain.DSN(regressionDB)); err != nil {
					t.Logf("plain: mid-schedule snapshot: %v", err)
				}
			}
		}})
	plainTook := time.Since(start)
	t.Logf("plain run took %s", plainTook.Round(time.Second))

	// (b) with btfu.
	src := startCluster("btfu")
	srcTarget := target("btfu", src)
	bin := os.Getenv(envBin)
	if bin == "" {
		if bin, err = Build(ctx, "../..", filepath.Join(work, "bin")); err != nil {
			t.Fatal(err)
		}
	}
	bdir := filepath.Join(work, "btfu-home")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	extra := os.Getenv(envExtra)
	b, err := NewBtfu(bin, bdir, Config(bdir, "regression", src.DSN(regressionDB), extra))
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
		t.Logf("btfu [[source]] extra lines (%s):\n%s", envExtra, extra)
	}
	st, err := b.WaitStreaming(ctx, 3*time.Minute)
	if err != nil {
		logBtfu(t, b, src, plain.LogFile)
		t.Fatalf("btfu: %v", err)
	}
	t.Logf("btfu streaming (flushed %s, %d base backup(s)); running the suite", st.FlushedLSN, st.BaseBackups)

	w := startWatch(ctx, b)
	var midSnap *Snapshot
	start = time.Now()
	btfuResults := suite.Run(ctx, srcTarget, RunOptions{Files: files, Timeout: timeout, After: progress("btfu"),
		Before: func(i int, name string) {
			w.setFile(name)
			if doRestore && i == mid {
				s, err := TakeSnapshot(ctx, src.DSN(regressionDB))
				if err != nil {
					t.Errorf("mid-schedule snapshot: %v", err)
					return
				}
				midSnap = s
				t.Logf("mid-schedule mark before %s (file %d of %d): LSN %s, %d tables (read in %s)", name, i+1, len(files), s.LSN, len(s.Tables), s.Took.Round(time.Millisecond))
			}
		}})
	btfuTook := time.Since(start)
	w.setFile("(after the suite)")
	endLSN := src.CurrentLSN(t)
	t.Logf("btfu run took %s; source at %s after the suite", btfuTook.Round(time.Second), endLSN)

	files2 := CompareRuns(plainResults, btfuResults)
	t.Run("do no harm", func(t *testing.T) {
		t.Log("\n" + Report(files2, plainTook, btfuTook))
		for _, f := range files2 {
			if f.Harmful() {
				t.Errorf("%s: %d errors plain, %d with btfu%s", f.Name, len(f.Plain.Errors), len(f.Btfu.Errors), timedOut(f.Btfu))
			}
		}
	})

	covered := t.Run("coverage", func(t *testing.T) {
		deadline := time.Now().Add(3 * time.Minute)
		var s SourceStatus
		for {
			var err error
			s, err = b.Source(ctx)
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

	w.stop()
	t.Log("\n" + w.report())
	logBtfu(t, b, src, plain.LogFile)

	if !doRestore {
		t.Logf("restore comparison: NOT RUN (set %s=1 to restore the latest state and the mid-schedule LSN and compare them with the source)", envRestore)
		return
	}
	if !covered {
		t.Log("restoring anyway, though coverage did not reach the end of the suite")
	}
	endSnap, err := TakeSnapshot(ctx, src.DSN(regressionDB))
	if err != nil {
		t.Fatalf("snapshot of the source after the suite: %v", err)
	}
	t.Logf("source after the suite: LSN %s, %d tables (read in %s)", endSnap.LSN, len(endSnap.Tables), endSnap.Took.Round(time.Millisecond))
	restoreAndCompare(t, b, plain, "latest", []string{"--latest"}, endSnap)
	if midSnap == nil {
		t.Error("restore mid: no mid-schedule snapshot was taken")
	} else {
		restoreAndCompare(t, b, plain, "mid", []string{"--lsn", midSnap.LSN}, midSnap)
	}
	stopBtfu()
}

// restoreAndCompare restores into a fresh database of the plain cluster
// (which holds the roles the suite left, as the source's cluster does)
// and compares it with want.
func restoreAndCompare(t *testing.T, b *Btfu, into *pgtest.Cluster, label string, args []string, want *Snapshot) {
	t.Run("restore "+label, func(t *testing.T) {
		ctx := context.Background()
		db := "corpus_restore_" + label
		into.Exec(t, "postgres", "CREATE DATABASE "+db+" TEMPLATE=template0")
		full := append(append([]string{"restore"}, args...), "--target", into.DSN(db), "--yes")
		r, err := b.Run(ctx, 30*time.Minute, full...)
		t.Logf("btfu %s: exit %d after %s\n%s%s", strings.Join(full, " "), r.Code, r.Took.Round(time.Second), fewLeftOut(r.Stdout, 10), withoutProgress(r.Stderr))
		if err != nil {
			t.Errorf("restore %s: %v", label, err)
		} else if r.Code != 0 {
			t.Errorf("restore %s exited %d", label, r.Code)
		}
		got, err := TakeSnapshot(ctx, into.DSN(db))
		if err != nil {
			t.Fatalf("snapshot of the restore: %v", err)
		}
		c := Compare(want, got)
		c.LeftOut = LeftOutTables(r.Stdout)
		t.Logf("restore %s (source at %s) compared with the source:\n%s", label, want.LSN, c.Summary())
		if !c.OK() {
			t.Errorf("restore %s: %d of %d tables equal, %d differing, %d missing (see above)", label, len(c.Equal), len(want.Tables), len(c.Differing), len(c.Missing))
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
