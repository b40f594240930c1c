package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// status, pause, resume and backup talk to the running btfu over its
// socket, and fall back to the metadata (or explain) without one.
func TestControlCommandsWithAndWithoutADaemon(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY)")
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"ctl\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})
	if r := btfu(t, dir, "backup"); r.code != 1 || !strings.Contains(r.stderr, "btfu is not running") {
		t.Fatalf("backup without a daemon: %d %s", r.code, r.all())
	}
	daemon := exec.Command(bin, "--no-tui")
	daemon.Dir = dir
	daemon.Env = append(os.Environ(), "BTFU_CONFIG=")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			daemon.Process.Signal(syscall.SIGTERM)
			daemon.Wait()
		}
	}
	defer stop()
	waitStatus := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r := btfu(t, dir, "status")
			if strings.Contains(r.stdout, want) {
				return r.all()
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never showed %q:\n%s", want, r.all())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	out := waitStatus("streaming")
	if strings.Contains(out, "not running") {
		t.Fatalf("status did not use the running btfu:\n%s", out)
	}
	if r := btfu(t, dir, "--no-tui"); r.code == 0 || !strings.Contains(r.stderr, "another btfu is running") {
		t.Fatalf("a second btfu on the same metadata: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "backup"); r.code != 0 || !strings.Contains(r.stdout, "base backup") || !strings.Contains(r.stdout, "complete") {
		t.Fatalf("backup: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "pause"); r.code != 0 || !strings.Contains(r.stdout, "paused") {
		t.Fatalf("pause: %d %s", r.code, r.all())
	}
	waitStatus("paused")
	if r := btfu(t, dir, "resume"); r.code != 0 {
		t.Fatalf("resume: %d %s", r.code, r.all())
	}
	waitStatus("streaming")
	stop()

	// Without a daemon: recorded for the next start.
	if r := btfu(t, dir, "pause"); r.code != 0 || !strings.Contains(r.stdout, "will be paused when it starts") {
		t.Fatalf("pause without a daemon: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "status"); !strings.Contains(r.stderr, "btfu is not running; showing stored metadata") {
		t.Fatalf("status without a daemon: %s", r.all())
	}
	if r := btfu(t, dir, "resume"); r.code != 0 || !strings.Contains(r.stdout, "will be resumed") {
		t.Fatalf("resume without a daemon: %d %s", r.code, r.all())
	}
}
