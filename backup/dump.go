package backup

import (
	"context"
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
// is never stored.
func (j *job) dump(ctx context.Context, key string, extra io.Writer, args ...string) (size int64, sha string, err error) {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(dctx, j.pgDump.Path, append(args, "--no-password", "--dbname="+j.dsn)...)
	cmd.Env = append(os.Environ(), j.env...)
	cmd.WaitDelay = 10 * time.Second
	out := &dumpOutput{cmd: cmd}
	cmd.Stderr = &out.stderr
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
	switch {
	case ctx.Err() != nil:
		return 0, "", fmt.Errorf("pg_dump interrupted: %w", context.Cause(ctx))
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
			d.err = fmt.Errorf("pg_dump failed (%v)", err)
			if msg := d.stderr.String(); msg != "" {
				d.err = fmt.Errorf("%w: %s", d.err, msg)
			}
		}
	}
	return d.err
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
