package corpus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Suite is the regression suite as scripts/corpus-setup.sh leaves it.
type Suite struct {
	Dir    string // src/test/regress: sql/, data/, expected/, parallel_schedule (PG_ABS_SRCDIR)
	LibDir string // regress.so, autoinc.so, refint.so (PG_LIBDIR)
}

// SuiteAt checks that dir holds the suite and that its modules were
// built beside it (../lib).
func SuiteAt(dir string) (Suite, error) {
	s := Suite{Dir: dir, LibDir: filepath.Join(filepath.Dir(dir), "lib")}
	for _, p := range []string{
		filepath.Join(dir, "parallel_schedule"), filepath.Join(dir, "sql", "test_setup.sql"), filepath.Join(dir, "data"),
		filepath.Join(s.LibDir, "regress.so"), filepath.Join(s.LibDir, "autoinc.so"), filepath.Join(s.LibDir, "refint.so"),
	} {
		if _, err := os.Stat(p); err != nil {
			return Suite{}, fmt.Errorf("regression suite incomplete (run scripts/corpus-setup.sh): %w", err)
		}
	}
	return s, nil
}

// Target is one cluster the suite runs against.
type Target struct {
	Label    string // "plain", "btfu"
	PSQL     string // the psql binary
	SockDir  string // psql connects over the unix socket, as pg_regress does (trust for every role)
	Port     int
	DB       string // the regression database
	AdminDSN string // superuser DSN used to end a timed-out file's sessions
	// BuildDir is PG_ABS_BUILDDIR: the outputs go to its results/, where
	// the server also writes (COPY TO, lo_export), so it must be writable
	// by the server's OS user.
	BuildDir string
}

// FileResult is one test file's run.
type FileResult struct {
	Name     string
	Errors   []string // ERROR, FATAL and PANIC lines of the output, in order
	Took     time.Duration
	TimedOut bool
	Exit     int    // psql's exit code; -1 when it was killed
	Output   string // the output file (results/NAME.out)
	RunErr   string // psql could not be run at all
	// Left is what a timed-out file left behind once its sessions were
	// ended: prepared transactions (which keep their locks).
	Left []string
}

// RunOptions select and bound a run.
type RunOptions struct {
	Files   []string
	Timeout time.Duration // per file
	// Before, when set, is called before file i runs (after file i-1
	// ended); the mid-schedule snapshot hooks in here.
	Before func(i int, name string)
	// After, when set, is called with each file's result.
	After func(i int, r FileResult)
}

// Run runs the files serially against tgt.
func (s Suite) Run(ctx context.Context, tgt Target, opts RunOptions) []FileResult {
	out := make([]FileResult, 0, len(opts.Files))
	for i, name := range opts.Files {
		if ctx.Err() != nil {
			break
		}
		if opts.Before != nil {
			opts.Before(i, name)
		}
		r := s.RunFile(ctx, tgt, name, opts.Timeout)
		out = append(out, r)
		if opts.After != nil {
			opts.After(i, r)
		}
	}
	return out
}

// Env returns the environment pg_regress gives psql for test name
// (initialize_environment and psql_start_test in pg_regress.c of
// PostgreSQL 15): no stray PG* or locale variables, the connection to the
// test server, PGAPPNAME=pg_regress/NAME, the time zone and date and
// interval styles the expected outputs assume, and the directories the
// .sql files \getenv.
func (s Suite) Env(tgt Target, name string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"PGHOST="+tgt.SockDir,
		"PGPORT="+strconv.Itoa(tgt.Port),
		"PGUSER=postgres",
		"PGAPPNAME=pg_regress/"+name,
		// 15.18's pg_regress sets America/Los_Angeles (older minors:
		// PST8PDT, the same rules).
		"PGTZ=America/Los_Angeles",
		"PGDATESTYLE=Postgres, MDY",
		"PGOPTIONS=-c intervalstyle=postgres_verbose",
		"LC_MESSAGES=C",
		"PG_ABS_SRCDIR="+s.Dir,
		"PG_ABS_BUILDDIR="+tgt.BuildDir,
		"PG_LIBDIR="+s.LibDir,
		"PG_DLSUFFIX=.so",
	)
}

// RunFile runs one test file: psql -X -a -q with the file on stdin and
// stdout and stderr into results/NAME.out, as pg_regress does. A file
// still running after timeout is killed, and the server sessions it left
// are terminated so that the next file does not wait on their locks.
func (s Suite) RunFile(ctx context.Context, tgt Target, name string, timeout time.Duration) FileResult {
	r := FileResult{Name: name, Output: filepath.Join(tgt.BuildDir, "results", name+".out")}
	in, err := os.Open(filepath.Join(s.Dir, "sql", name+".sql"))
	if err != nil {
		r.RunErr, r.Exit = err.Error(), -1
		return r
	}
	defer in.Close()
	outf, err := os.Create(r.Output)
	if err != nil {
		r.RunErr, r.Exit = err.Error(), -1
		return r
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(fctx, tgt.PSQL, "-X", "-a", "-q", "-d", tgt.DB,
		"-v", "HIDE_TABLEAM=on", "-v", "HIDE_TOAST_COMPRESSION=on")
	cmd.Env = s.Env(tgt, name)
	cmd.Dir = tgt.BuildDir
	cmd.Stdin = in
	cmd.Stdout, cmd.Stderr = outf, outf // one file, like pg_regress's 2>&1
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	r.Took = time.Since(start)
	outf.Close()
	var ee *exec.ExitError
	switch {
	case fctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		r.TimedOut, r.Exit = true, -1
		r.Left = endSessions(tgt.AdminDSN)
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	case err != nil:
		r.RunErr, r.Exit = err.Error(), -1
	}
	r.Errors, err = ErrorLines(r.Output)
	if err != nil && r.RunErr == "" {
		r.RunErr = err.Error()
	}
	return r
}

// endSessions terminates the sessions a killed psql left on the server
// (every pg_regress/* application name), waits for them to go, and
// returns the prepared transactions still there: pg_regress would leave
// them too, so the runner does, and says so.
func endSessions(dsn string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return []string{"could not connect to end the sessions: " + err.Error()}
	}
	defer conn.Close(ctx)
	const sessions = "FROM pg_stat_activity WHERE application_name LIKE 'pg_regress%' AND pid <> pg_backend_pid()"
	_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) "+sessions)
	for ctx.Err() == nil {
		var n int
		if conn.QueryRow(ctx, "SELECT count(*) "+sessions).Scan(&n) != nil || n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rows, err := conn.Query(ctx, `SELECT format('prepared transaction %L (xid %s, owner %s, database %s, prepared %s)', gid, transaction, owner, database, prepared)
		FROM pg_prepared_xacts ORDER BY prepared`)
	if err != nil {
		return []string{"pg_prepared_xacts: " + err.Error()}
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		left = append(left, "pg_prepared_xacts: "+err.Error())
	}
	return left
}

// errorLine matches the lines counted as errors: psql prints a server
// ERROR (and FATAL, PANIC) as "ERROR:  ..." when it reads stdin, with a
// "psql:FILE:LINE: " prefix when it reads a file; its own errors
// ("psql:<stdin>:12: error: ...") are not server errors and not counted.
var errorLine = regexp.MustCompile(`^(?:psql:[^ ]*:\d+: )?(?:ERROR|FATAL|PANIC):`)

// ErrorLines returns the error lines of an output file in order.
func ErrorLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if errorLine.Match(sc.Bytes()) {
			lines = append(lines, sc.Text())
		}
	}
	return lines, sc.Err()
}

// ReadLines returns a file's lines (nil if it cannot be read).
func ReadLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
