package api

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The socket is a lock on the metadata: a live one is refused, a stale
// one replaced, anything else in the way left alone.
func TestSocketFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "btfu.sock")
	live, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	if _, err := Listeners(path, ""); err == nil || !strings.Contains(err.Error(), "another btfu is running on this metadata") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	live.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("closing the listener left the socket file: %v", err)
	}

	// A btfu that died leaves its socket file; nobody answers on it.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatal(err)
	}
	ls, err := Listeners(stale, "")
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ls[0].Close()

	// Not a socket: refused and kept.
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "regular file is in the way") {
		t.Fatalf("regular file as socket path: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("the file in the way was touched: %q %v", b, err)
	}

	// Too long for sun_path: says so and names the key.
	long := filepath.Join(dir, strings.Repeat("d", 120), "btfu.sock")
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "[api] socket") {
		t.Fatalf("long path: %v", err)
	}

	// A TCP address in use names the key.
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if _, err := Listeners(filepath.Join(dir, "x.sock"), tcp.Addr().String()); err == nil || !strings.Contains(err.Error(), "api.listen") {
		t.Fatalf("TCP address in use: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed Listeners left its socket: %v", err)
	}
}
