package corpus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

// Status is the part of `btfu status --json` the corpus test reads (the
// binary's interface; Status is what prints it).
type Status struct {
	Sources []SourceStatus `json:"sources"`
}

// SourceStatus is one source of Status.
type SourceStatus struct {
	Name          string  `json:"name"`
	State         string  `json:"state"`
	Streaming     bool    `json:"streaming"`
	FlushedLSN    string  `json:"flushed_lsn"`
	SourceLSN     string  `json:"source_lsn"`
	LagBytes      *int64  `json:"lag_bytes"`
	RetainedBytes *int64  `json:"retained_wal_bytes"`
	WALBudget     int64   `json:"wal_budget_bytes"`
	Coverage      []Range `json:"coverage"`
	LastBackup    *Backup `json:"last_base_backup"`
	BaseBackups   int     `json:"base_backups"`
	Segments      int     `json:"segments"`
	SegmentBytes  int64   `json:"segment_bytes"`
	LastError     string  `json:"last_error"`
	Attention     string  `json:"attention"`
}

// Backup is the newest complete base backup of a status.
type Backup struct {
	Key           string `json:"key"`
	ConsistentLSN string `json:"consistent_lsn"`
}

// Range is one restorable range.
type Range struct {
	FromLSN string `json:"from_lsn"`
	ToLSN   string `json:"to_lsn"`
}

// Build compiles the btfu binary of the module at moduleDir into dir.
func Build(ctx context.Context, moduleDir, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "btfu")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build btfu: %w\n%s", err, out)
	}
	return bin, nil
}

// Btfu is the real binary running headless (btfu --no-tui) on a config
// of one source.
type Btfu struct {
	Bin     string
	Dir     string // working directory: config, metadata, artifacts, spool, log
	Config  string
	LogPath string // its stderr: JSON log lines

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Config is the configuration the corpus test gives btfu: the defaults,
// with metadata and artifacts in dir, one source named source on
// dsn, and extra appended to the [[source]] table.
func Config(dir, source, dsn, extra string) string {
	return fmt.Sprintf(`[metadata]
driver = "sqlite"
path = %q

[storage]
kind = "local"
path = %q

[[source]]
name = %q
dsn = %q
%s
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "artifacts"), source, dsn, extra)
}

// NewBtfu writes config into dir and returns a handle to start the binary
// with.
func NewBtfu(bin, dir, config string) (*Btfu, error) {
	b := &Btfu{Bin: bin, Dir: dir, Config: filepath.Join(dir, "config.toml"), LogPath: filepath.Join(dir, "btfu.log")}
	if err := os.WriteFile(b.Config, []byte(config), 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// Start runs btfu --no-tui in the background, its stderr into LogPath.
func (b *Btfu) Start() error {
	logf, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.Bin, "--config", b.Config, "--no-tui")
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "BTFU_CONFIG=")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start btfu: %w", err)
	}
	b.cmd = cmd
	b.exited = make(chan struct{})
	go func() {
		b.waitErr = cmd.Wait()
		logf.Close()
		close(b.exited)
	}()
	return nil
}

// Exited reports whether the daemon has ended, and how.
func (b *Btfu) Exited() (bool, error) {
	if b.exited == nil {
		return false, nil
	}
	select {
	case <-b.exited:
		return true, b.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to timeout (then kills). It returns how
// the process ended; an error when it needed the kill or exited non-zero.
func (b *Btfu) Stop(timeout time.Duration) error {
	if b.cmd == nil {
		return nil
	}
	if done, err := b.Exited(); done {
		return fmt.Errorf("btfu had already exited: %v", err)
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		if b.waitErr != nil {
			return fmt.Errorf("btfu exited after SIGTERM: %w", b.waitErr)
		}
		return nil
	case <-time.After(timeout):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return fmt.Errorf("btfu did not stop within %s of SIGTERM (killed)", timeout)
	}
}

// Result is one run of a btfu command.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
	Took           time.Duration
}

// Run runs btfu --config CONFIG args... and waits up to timeout.
func (b *Btfu) Run(ctx context.Context, timeout time.Duration, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Bin, append([]string{"--config", b.Config}, args...)...)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "BTFU_CONFIG=")
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := Result{Args: args, Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return r, fmt.Errorf("btfu %s did not finish within %s", strings.Join(args, " "), timeout)
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("btfu %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// Status returns btfu status --json (live from the daemon, else from the
// metadata).
func (b *Btfu) Status(ctx context.Context) (Status, error) {
	var st Status
	r, err := b.Run(ctx, time.Minute, "status", "--json")
	if err != nil {
		return st, err
	}
	if r.Code != 0 {
		return st, fmt.Errorf("btfu status --json exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		return st, fmt.Errorf("btfu status --json: %w\n%s", err, r.Stdout)
	}
	return st, nil
}

// Source returns the status of the one configured source.
func (b *Btfu) Source(ctx context.Context) (SourceStatus, error) {
	st, err := b.Status(ctx)
	if err != nil {
		return SourceStatus{}, err
	}
	if len(st.Sources) != 1 {
		return SourceStatus{}, fmt.Errorf("btfu status lists %d sources, want 1", len(st.Sources))
	}
	return st.Sources[0], nil
}

// WaitStreaming polls the status until the source is streaming (its
// first base backup stored and changes being stored).
func (b *Btfu) WaitStreaming(ctx context.Context, timeout time.Duration) (SourceStatus, error) {
	deadline := time.Now().Add(timeout)
	var last SourceStatus
	var lastErr error
	for {
		if done, err := b.Exited(); done {
			return last, fmt.Errorf("btfu exited before streaming: %v", err)
		}
		s, err := b.Source(ctx)
		if err == nil && s.State == store.StateStreaming && s.Streaming {
			return s, nil
		}
		if err == nil {
			last = s
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last, fmt.Errorf("not streaming after %s (state %q, attention %q, last error %q, status error %v)",
				timeout, last.State, last.Attention, last.LastError, lastErr)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// CoverageEnd returns the end LSN of the last restorable range (0 when
// nothing is restorable).
func CoverageEnd(s SourceStatus) pglogrepl.LSN {
	var end pglogrepl.LSN
	for _, r := range s.Coverage {
		if l, err := pglogrepl.ParseLSN(r.ToLSN); err == nil && l > end {
			end = l
		}
	}
	return end
}

// LogLine is one line of btfu's JSON log.
type LogLine struct {
	Time  string
	Level string
	Msg   string
	Kind  string // the event kind ("publication.table_left_out"), when the line has one
	Raw   string
}

// LogLines returns the log lines at one of levels (e.g. "WARN", "ERROR");
// lines that are not JSON are returned with level "TEXT".
func (b *Btfu) LogLines(levels ...string) []LogLine {
	f, err := os.Open(b.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	want := map[string]bool{}
	for _, l := range levels {
		want[l] = true
	}
	var out []LogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		raw := sc.Text()
		if strings.TrimSpace(raw) == "" {
			continue
		}
		var rec struct {
			Time  string `json:"time"`
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Kind  string `json:"kind"`
		}
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			out = append(out, LogLine{Level: "TEXT", Raw: raw})
			continue
		}
		if want[rec.Level] {
			out = append(out, LogLine{Time: rec.Time, Level: rec.Level, Msg: rec.Msg, Kind: rec.Kind, Raw: raw})
		}
	}
	return out
}

// LogGroup is the log lines of one level and kind of message.
type LogGroup struct {
	Level, Key  string
	Count       int
	First, Last LogLine
}

var (
	quoted    = regexp.MustCompile(`"[^"]*"|'[^']*'`)
	qualified = regexp.MustCompile(`\b[\w$]+\.[\w$]+\b`)
	number    = regexp.MustCompile(`[0-9A-F]+/[0-9A-F]+|\d+`)
)

// logKey is what groups log lines: the event kind when there is one,
// else the message with quoted strings, qualified names, LSNs and numbers
// blanked (the table a message names does not make it another message).
func logKey(l LogLine) string {
	if l.Level == "TEXT" {
		return "TEXT\x00" + l.Raw
	}
	if l.Kind != "" {
		return l.Level + "\x00kind " + l.Kind
	}
	m := quoted.ReplaceAllString(l.Msg, "…")
	m = qualified.ReplaceAllString(m, "X.Y")
	return l.Level + "\x00" + number.ReplaceAllString(m, "N")
}

// GroupLog groups lines by level and kind of message, in order of first
// appearance.
func GroupLog(lines []LogLine) []LogGroup {
	idx := map[string]int{}
	var groups []LogGroup
	for _, l := range lines {
		k := logKey(l)
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, LogGroup{Level: l.Level, Key: k, First: l})
		}
		groups[i].Count++
		groups[i].Last = l
	}
	return groups
}
