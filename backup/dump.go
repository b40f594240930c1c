package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/store/artifact"
)

// dump runs pg_dump with args and streams its output into the artifact
// key, also copying it to extra when not nil. pg_dump's exit status is
// checked before the store sees the end of the stream, so a failed dump
// is never stored. locked, when not nil, runs once pg_dump holds its
// locks on every table and is still connected: when it reports (verbose)
// that it dumps the first table's contents, else after it ends. An error
// from it stops the dump and is returned.
func (j *job) dump(ctx context.Context, key string, extra io.Writer, locked func() error, args ...string) (size int64, sha string, err error) {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if locked != nil {
		args = append(args, "--verbose")
	}
	cmd := exec.CommandContext(dctx, j.pgDump.Path, append(args, "--no-password", "--dbname="+j.dsn)...)
	cmd.Env = append(os.Environ(), j.env...)
	cmd.WaitDelay = 10 * time.Second
	out := &dumpOutput{cmd: cmd}
	cmd.Stderr = &out.stderr
	var lockedErr error
	ran := false
	if locked != nil {
		cmd.Env = append(cmd.Env, "LC_MESSAGES=C", "LC_ALL=")
		cmd.Stderr = &verboseWatch{keep: &out.stderr, marker: "dumping contents of table", at: func() {
			ran = true
			if lockedErr = locked(); lockedErr != nil {
				cancel()
			}
		}}
	}
	if out.Reader, err = cmd.StdoutPipe(); err != nil {
		return 0, "", fmt.Errorf("pg_dump: %w", err)
	}
	if cmdHook != nil {
		cmdHook(cmd)
	}
	if err := cmd.Start(); err != nil {
		return 0, "", fmt.Errorf("start %s: %w", j.pgDump.Path, err)
	}
	j.written = append(j.written, key)
	if extra == nil {
		extra = io.Discard
	}
	size, sha, err = artifact.PutHashed(dctx, j.Artifacts, key, io.TeeReader(out, extra))
	stopped := !out.waited // the store stopped reading before pg_dump's end
	if stopped {
		cancel()
		_ = out.wait()
	}
	// Not stopped: pg_dump was waited for, so the stderr watcher is done.
	if !stopped && locked != nil && !ran && out.err == nil && err == nil {
		lockedErr = locked() // no table data: check after the end
	}
	switch {
	case ctx.Err() != nil:
		return 0, "", fmt.Errorf("pg_dump interrupted: %w", context.Cause(ctx))
	case lockedErr != nil:
		return 0, "", lockedErr
	case out.err != nil && !stopped:
		return 0, "", out.err
	case err != nil:
		return 0, "", fmt.Errorf("store %s in %s: %w", key, j.Artifacts, err)
	case stopped:
		return 0, "", fmt.Errorf("store %s in %s: stored before pg_dump finished", key, j.Artifacts)
	}
	if msg := out.stderr.String(); msg != "" {
		j.log.Warn("pg_dump printed messages", "key", key, "output", msg)
	}
	return size, sha, nil
}

// lockedTable is the table a pg_dump failed to lock (it lists tables
// from the snapshot's catalog, then locks them), "" for other failures.
func lockedTable(err error) string {
	var d *dumpError
	if !errors.As(err, &d) {
		return ""
	}
	_, rest, ok := strings.Cut(d.stderr, "Query was: LOCK TABLE ")
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, " IN ACCESS SHARE MODE")
	if !ok {
		return ""
	}
	return name
}

// dumpError is pg_dump's failed exit with its standard error.
type dumpError struct {
	err    error
	stderr string
}

func (e *dumpError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("pg_dump failed (%v)", e.err)
	}
	return fmt.Sprintf("pg_dump failed (%v): %s", e.err, e.stderr)
}

func (e *dumpError) Unwrap() error { return e.err }

// dumpOutput is pg_dump's standard output. At its end it waits for
// pg_dump and turns a failed exit into a read error.
type dumpOutput struct {
	io.Reader
	cmd    *exec.Cmd
	stderr tail
	waited bool
	err    error
}

func (d *dumpOutput) Read(p []byte) (int, error) {
	n, err := d.Reader.Read(p)
	if err == io.EOF {
		if werr := d.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (d *dumpOutput) wait() error {
	if !d.waited {
		d.waited = true
		if err := d.cmd.Wait(); err != nil {
			d.err = &dumpError{err: err, stderr: d.stderr.String()}
		}
	}
	return d.err
}

// verboseWatch reads pg_dump --verbose's standard error line by line: it
// calls at once, at the first line holding marker, and passes on only
// warnings and errors to keep (the progress lines are no news).
type verboseWatch struct {
	keep    io.Writer
	marker  string
	at      func()
	partial []byte
}

func (v *verboseWatch) Write(p []byte) (int, error) {
	v.partial = append(v.partial, p...)
	for {
		i := bytes.IndexByte(v.partial, '\n')
		if i < 0 {
			break
		}
		line := v.partial[:i+1]
		if v.at != nil && bytes.Contains(line, []byte(v.marker)) {
			at := v.at
			v.at = nil
			at()
		}
		if !bytes.HasPrefix(line, []byte("pg_dump: ")) || bytes.Contains(line, []byte("warning:")) || bytes.Contains(line, []byte("error:")) ||
			bytes.Contains(line, []byte("detail:")) || bytes.Contains(line, []byte("hint:")) {
			v.keep.Write(line)
		}
		v.partial = v.partial[i+1:]
	}
	return len(p), nil
}

// tail keeps the last stderrLimit bytes written to it.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > stderrLimit {
		t.b = t.b[len(t.b)-stderrLimit:]
	}
	return len(p), nil
}

// String is the kept output, trimmed and with secrets masked.
func (t *tail) String() string { return redact.String(strings.TrimSpace(string(t.b))) }
