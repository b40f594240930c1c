package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// A changed configuration file is loaded once it reads the same twice in
// a row, so a file caught half-written (truncated, then written) is never
// applied; SIGHUP loads it at once.
func TestConfigWatcherWaitsForTheFileToSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("full one")
	w := newConfigWatcher(path)
	step := func(what string, forced, want bool) {
		t.Helper()
		if got := w.changed(forced); got != want {
			t.Fatalf("%s: load %v, want %v", what, got, want)
		}
	}
	step("unchanged", false, false)
	write("full")
	step("caught half-written", false, false)
	write("full two")
	step("written whole, seen once", false, false)
	step("seen twice", false, true)
	step("loaded", false, false)

	write("an edit")
	step("an edit seen once", false, false)
	write("full two")
	step("edited back before it settled", false, false)
	write("an edit")
	step("the edit again, seen once", false, false)
	step("the edit seen twice", false, true)

	step("SIGHUP, unchanged", true, true)
	write("sighup")
	step("SIGHUP right after a write", true, true)
	step("loaded by SIGHUP", false, false)
}
