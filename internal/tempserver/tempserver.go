// Package tempserver holds what the throwaway test servers (internal/pgtest's
// PostgreSQL clusters, internal/s3test's versitygw) share: a free loopback
// port, and the clean-up of directories a killed test binary left behind.
package tempserver

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CleanStale removes the directories $TMPDIR/<prefix>* whose owner.pid
// names a test binary that is gone (never this process's), after stop has
// killed what that owner left running from the directory.
func CleanStale(prefix string, stop func(dir string)) {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range matches {
		pid, err := ReadPid(filepath.Join(dir, "owner.pid"))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // unreadable, ours, or owner still alive
		}
		stop(dir)
		os.RemoveAll(dir)
	}
}

// ReadPid reads a file holding a process id.
func ReadPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(bytes.TrimSpace(b)))
}
