package tempserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestFreePortCanBeListenedOn(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d: %v", port, err)
	}
	l.Close()
}

// Only directories whose owner is gone are removed, after stop ran on
// them; this process's and a live owner's stay.
func TestCleanStaleRemovesOnlyOrphans(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	prefix := "btfu-tempserver-test-"
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]int{"dead": dead.Process.Pid, "ours": os.Getpid(), "alive": os.Getppid()}
	for name, pid := range dirs {
		dir := filepath.Join(os.TempDir(), prefix+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(fmt.Sprintf("%d\n", pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stopped []string
	CleanStale(prefix, func(dir string) { stopped = append(stopped, filepath.Base(dir)) })
	if len(stopped) != 1 || stopped[0] != prefix+"dead" {
		t.Errorf("stopped %v, want only the dead owner's", stopped)
	}
	for name := range dirs {
		_, err := os.Stat(filepath.Join(os.TempDir(), prefix+name))
		if gone := os.IsNotExist(err); gone != (name == "dead") {
			t.Errorf("%s: removed %v", name, gone)
		}
	}
}
