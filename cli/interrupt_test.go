package cli_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
)

// Ctrl-C during replay stops the restore, says the target is partial,
// exits non-zero, and the restore is recorded as failed.
func TestRestoreInterruptedSaysTheTargetIsPartial(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE big(id int PRIMARY KEY, n int); INSERT INTO big SELECT g, 0 FROM generate_series(1, 300000) g")
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"big\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})
	daemon := exec.Command(bin, "--no-tui")
	daemon.Dir = dir
	daemon.Env = append(os.Environ(), "BTFU_CONFIG=")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if r := btfu(t, dir, "restore", "--latest", "--dry-run"); r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no base backup")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Replay of these updates takes seconds: time to interrupt it.
	for i := 0; i < 3; i++ {
		source.Exec(t, db, "UPDATE big SET n = n + 1")
	}
	lsn := source.CurrentLSN(t)
	for {
		if r := btfu(t, dir, "restore", "--lsn", lsn.String(), "--dry-run"); r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("coverage never reached the updates")
		}
		time.Sleep(200 * time.Millisecond)
	}
	target := source.CreateDB(t)
	cmd := exec.Command(bin, "restore", "--lsn", lsn.String(), "--target", source.DSN(target), "--yes")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BTFU_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stderr)
	interrupted := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !interrupted && strings.Contains(sc.Text(), `"phase":"replay"`) {
			cmd.Process.Signal(os.Interrupt)
			interrupted = true
		}
	}
	err = cmd.Wait()
	all := strings.Join(lines, "\n")
	if !interrupted {
		t.Fatalf("the restore never reached replay:\n%s", all)
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 {
		t.Fatalf("interrupted restore exited %v:\n%s", err, all)
	}
	if !strings.Contains(all, "interrupted: the target is partial and must not be used") {
		t.Fatalf("interrupted restore does not say the target is partial:\n%s", all)
	}
	if n := pgtest.QueryValue[int64](t, source, target, "SELECT count(*) FROM big WHERE n = 3"); n == 300000 {
		t.Fatal("the restore finished although interrupted: the test did not interrupt it")
	}
	var st struct {
		Sources []struct {
			LastRestore *struct{ Status, Error string } `json:"last_restore"`
		} `json:"sources"`
	}
	r := btfu(t, dir, "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Sources) != 1 || st.Sources[0].LastRestore == nil || st.Sources[0].LastRestore.Status != "failed" {
		t.Fatalf("status after an interrupted restore: %v\n%s", err, r.all())
	}
	if r := btfu(t, dir, "status"); !strings.Contains(r.stdout, "last restore:") || !strings.Contains(r.stdout, "failed") {
		t.Fatalf("status table does not show the failed restore:\n%s", r.all())
	}
}
