package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btfu/btfu/engine"
)

// lockedBuffer collects a daemon's stderr while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs 'btfu --no-tui' in dir until the returned stop is
// called (or the test ends).
func startDaemon(t *testing.T, dir string) (stop func(), stderr *lockedBuffer) {
	t.Helper()
	daemon := exec.Command(bin, "--no-tui")
	daemon.Dir = dir
	daemon.Env = append(os.Environ(), "BTFU_CONFIG=")
	stderr = &lockedBuffer{}
	daemon.Stderr = stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		daemon.Process.Signal(syscall.SIGTERM)
		if err := daemon.Wait(); err != nil {
			t.Errorf("btfu --no-tui: %v\n%s", err, stderr)
		}
	}
	t.Cleanup(stop)
	return stop, stderr
}

// waitStatus runs 'btfu status' until its output holds every string in
// want.
func waitStatus(t *testing.T, dir string, want ...string) result {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := btfu(t, dir, "status")
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(r.stdout, w)
		}
		if ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %q:\n%s", want, r.all())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sourceStatusJSON(t *testing.T, dir string) (engine.SourceStatus, result) {
	t.Helper()
	r := btfu(t, dir, "status", "--json")
	var st engine.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Sources) != 1 {
		t.Fatalf("status --json: %v\n%s", err, r.all())
	}
	return st.Sources[0], r
}

func TestControlCommandsHelp(t *testing.T) {
	for _, cmd := range []string{"backup", "pause", "resume"} {
		r := btfu(t, t.TempDir(), cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: btfu "+cmd) || !strings.Contains(r.stdout, "-source") {
			t.Errorf("%s --help: exit %d\n%s", cmd, r.code, r.all())
		}
	}
	r := btfu(t, t.TempDir(), "--help")
	for _, cmd := range []string{"backup", "pause", "resume"} {
		if !strings.Contains(r.stdout, "\n  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, r.stdout)
		}
	}
}

// status, pause, resume and backup talk to the running btfu over its
// socket, and fall back to the metadata (or explain) without one.
func TestControlCommandsWithAndWithoutADaemon(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY)")
	cfgText := fmt.Sprintf("[[source]]\nname = \"ctl\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db)
	dir := writeConfig(t, cfgText)
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})

	// Before btfu ever ran.
	if r := btfu(t, dir, "backup"); r.code != 1 || !strings.Contains(r.stderr, "btfu is not running") || !strings.Contains(r.stderr, "btfu --no-tui") {
		t.Fatalf("backup without a daemon: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause", "--source", "nope"); r.code != 1 || !strings.Contains(r.stderr, `no source "nope"`) {
		t.Fatalf("pause of an unknown source: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause", "extra"); r.code != 2 {
		t.Fatalf("pause with an argument: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause", "--source", "ctl"); r.code != 0 || !strings.Contains(r.stdout, "btfu is not running; source ctl will be paused when it starts") {
		t.Fatalf("pause before the first run: %d %s", r.code, r.all())
	}
	ss, r := sourceStatusJSON(t, dir)
	if !ss.Paused || !strings.Contains(r.stderr, "btfu is not running; showing stored metadata") {
		t.Fatalf("status after an offline pause: %+v\n%s", ss, r.stderr)
	}

	// The daemon starts paused, as recorded; resumed through the socket
	// it streams.
	stop, daemonLog := startDaemon(t, dir)
	socket := filepath.Join(dir, "btfu.sock")
	waitStatus(t, dir, "THROUGHPUT", " paused ")
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	if r := btfu(t, dir, "resume", "--source", "ctl"); r.code != 0 || r.stdout != "source ctl: resumed\n" {
		t.Fatalf("resume: %d %s", r.code, r.all())
	}
	r = waitStatus(t, dir, " streaming ")
	for _, want := range []string{"LAG", "RPO", "THROUGHPUT", "tx/s"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("live status lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.all(), "not running") {
		t.Fatalf("status did not use the running btfu:\n%s", r.all())
	}
	if ss, _ := sourceStatusJSON(t, dir); ss.LagBytes == nil || ss.RPOSeconds == nil || ss.Paused {
		t.Fatalf("live status --json: %+v", ss)
	}
	if r := btfu(t, dir, "--no-tui"); r.code != 1 || !strings.Contains(r.stderr, "another btfu is running on this metadata") {
		t.Fatalf("a second btfu on the same metadata: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "backup", "--source", "ctl"); r.code != 0 || !strings.Contains(r.stdout, "base backup") || !strings.Contains(r.stdout, "of ctl complete") {
		t.Fatalf("backup: %d %s", r.code, r.all())
	}
	if ss, _ := sourceStatusJSON(t, dir); ss.BaseBackups != 2 {
		t.Fatalf("base backups after btfu backup: %d", ss.BaseBackups)
	}
	if r := btfu(t, dir, "pause"); r.code != 0 || r.stdout != "source ctl: paused\n" {
		t.Fatalf("pause: %d %s", r.code, r.all())
	}
	waitStatus(t, dir, " paused ")
	if r := btfu(t, dir, "backup"); r.code != 1 || !strings.Contains(r.stderr, "needs it streaming") {
		t.Fatalf("backup while paused: %d %s", r.code, r.all())
	}
	stop()
	if !strings.Contains(daemonLog.String(), "control API listening") {
		t.Errorf("the daemon did not log where its API listens:\n%s", daemonLog)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Fatalf("socket left after the daemon stopped: %v", err)
	}

	// Without a daemon again: the pause survived; resume is recorded for
	// the next start.
	if r := btfu(t, dir, "status"); !strings.Contains(r.stderr, "btfu is not running; showing stored metadata") || !strings.Contains(r.stdout, "paused") || strings.Contains(r.stdout, "THROUGHPUT") {
		t.Fatalf("status without a daemon: %s", r.all())
	}
	if r := btfu(t, dir, "resume"); r.code != 0 || !strings.Contains(r.stdout, "btfu is not running; source ctl will be resumed when it starts") {
		t.Fatalf("resume without a daemon: %d %s", r.code, r.all())
	}
	if ss, _ := sourceStatusJSON(t, dir); ss.Paused {
		t.Fatalf("still paused after an offline resume")
	}

	// Socket off, TCP on: the commands find btfu on the listen address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf("[api]\nsocket = \"off\"\nlisten = %q\n", addr)+cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	stop, _ = startDaemon(t, dir)
	r = waitStatus(t, dir, " streaming ")
	if !strings.Contains(r.stdout, "THROUGHPUT") || strings.Contains(r.stderr, "not running") {
		t.Fatalf("status over TCP:\n%s", r.all())
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Fatalf("socket = \"off\" made a socket: %v", err)
	}
	stop()
	if r := btfu(t, dir, "status"); !strings.Contains(r.stderr, "btfu is not running; showing stored metadata") {
		t.Fatalf("status with the daemon stopped: %s", r.all())
	}
}

// With the control API off no btfu can be asked: every command that would
// ask one says so in the same words, and pause and resume are recorded.
func TestControlCommandsWithTheAPIOff(t *testing.T) {
	dir := writeConfig(t, "[api]\nsocket = \"off\"\n[[source]]\nname = \"off\"\ndsn = \"postgres://btfu@127.0.0.1:1/none\"\nslot = \"s_off\"\n")
	const off = `btfu's control API is off ([api] socket = "off"), so a running btfu cannot be asked`
	if r := btfu(t, dir, "resume"); r.code != 0 || r.stdout != off+"; source off has never run and is not paused\n" {
		t.Fatalf("resume before the first run: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause"); r.code != 0 || r.stdout != off+"; source off will be paused when it starts\n" {
		t.Fatalf("pause: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause"); r.code != 0 || r.stdout != off+"; source off is already paused\n" {
		t.Fatalf("second pause: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "status"); !strings.Contains(r.stderr, off+"; showing stored metadata\n") {
		t.Fatalf("status: %s", r.all())
	}
	if r := btfu(t, dir, "backup"); r.code != 1 || !strings.Contains(r.stderr, off+": a base backup needs the running engine") {
		t.Fatalf("backup: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "resume"); r.code != 0 || r.stdout != off+"; source off will be resumed when it starts\n" {
		t.Fatalf("resume: %d %s", r.code, r.all())
	}
}
