package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// A spool directory belongs to one running worker, which holds an
// exclusive flock on the .lock file inside it. Another btfu sharing the
// spool location (the default is the system temporary directory) with a
// source of the same name must not remove it as left behind by a crash.

const spoolLock = ".lock"

// spoolDir is a worker's locked spool directory.
type spoolDir struct {
	path string
	lock *os.File
}

// makeSpool creates a spool directory under parent and locks it.
func makeSpool(parent, source string) (*spoolDir, error) {
	dir, err := os.MkdirTemp(parent, "btfu-"+source+"-")
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	f, err := lockSpool(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &spoolDir{path: dir, lock: f}, nil
}

// ensure makes the directory and its lock again when something (a
// temporary-file cleaner) removed them while btfu ran.
func (s *spoolDir) ensure() error {
	if _, err := os.Stat(filepath.Join(s.path, spoolLock)); err == nil {
		return nil
	}
	f, err := lockSpool(s.path)
	if err != nil {
		return err
	}
	s.lock.Close()
	s.lock = f
	return nil
}

// release unlocks and removes the directory.
func (s *spoolDir) release() {
	s.lock.Close()
	os.RemoveAll(s.path)
}

// lockSpool takes the directory's lock, creating the directory and the
// lock file when missing.
func lockSpool(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool directory %s: lock: %w", dir, err)
	}
	return f, nil
}

// removeLeftSpools removes the source's spool directories under parent
// that no running worker holds: left by a btfu that was killed.
func removeLeftSpools(parent, source string) (removed []string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, "btfu-"+source+"-*"))
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, spoolLock), os.O_RDWR, 0)
		if err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			f.Close() // releases the lock taken here
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // in use by a running btfu
			}
		}
		os.RemoveAll(d)
		removed = append(removed, d)
	}
	return removed
}
