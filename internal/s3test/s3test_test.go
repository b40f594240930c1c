package s3test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestServerServesBuckets(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if !strings.HasPrefix(s.Endpoint(), "http://127.0.0.1:") || s.AccessKey() == "" || len(s.SecretKey()) < 20 {
		t.Errorf("endpoint %q, access key %q, secret of %d chars", s.Endpoint(), s.AccessKey(), len(s.SecretKey()))
	}
	ctx := context.Background()
	var bucket string
	t.Run("sub/Test Name", func(t *testing.T) {
		bucket = s.CreateBucket(t)
		if bucket == s.CreateBucket(t) {
			t.Error("CreateBucket returned the same name twice")
		}
		key := "a/b"
		if _, err := s.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("hello")}); err != nil {
			t.Fatal(err)
		}
		out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		if b, err := io.ReadAll(out.Body); err != nil || string(b) != "hello" {
			t.Errorf("got %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, bucket, "a", "b")); err != nil {
			t.Errorf("object not stored in the data directory: %v", err)
		}
	})
	if _, err := os.Stat(filepath.Join(s.DataDir, bucket)); !os.IsNotExist(err) {
		t.Errorf("bucket %s survived its test: %v", bucket, err)
	}
	pid := s.cmd.Process.Pid
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.BaseDir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop", s.BaseDir)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("versitygw (pid %d) still runs after Stop", pid)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// noVersitygw leaves versitygw nowhere the lookup goes: no tools
// directory, PATH, GOBIN, GOPATH or home, and a working directory outside
// the repository (whose .tools/bin may hold it).
func noVersitygw(t *testing.T) string {
	t.Helper()
	empty := t.TempDir()
	for _, v := range []string{"PATH", "GOBIN", "GOPATH", "HOME", ToolsBinEnv} {
		t.Setenv(v, empty)
	}
	t.Chdir(empty)
	return empty
}

// fakeTool writes an executable named versitygw into dir.
func fakeTool(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "versitygw")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingBinaryNamesInstallCommand(t *testing.T) {
	noVersitygw(t)
	_, err := Start()
	if err == nil || !strings.Contains(err.Error(), InstallCommand) || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Start without versitygw: error = %v, want it to name 'make tools' and %q", err, InstallCommand)
	}
}

// make test installs versitygw into the repository's .tools/bin and says
// so in $BTFU_TOOLS_BIN; go test run by hand finds it there from any
// package directory. Either comes before $PATH, so the pinned version is
// the one tested.
func TestFindsTheRepositorysToolsBeforePath(t *testing.T) {
	empty := noVersitygw(t)
	onPath := fakeTool(t, filepath.Join(empty, "path"))
	t.Setenv("PATH", filepath.Dir(onPath))

	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module example.com/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inRepo := fakeTool(t, filepath.Join(repo, ".tools", "bin"))
	pkg := filepath.Join(repo, "internal", "pkg")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)
	if got, err := findBinary(); err != nil || got != inRepo {
		t.Errorf("from a package directory: found %q (%v), want the module root's %s", got, err, inRepo)
	}

	t.Setenv(ToolsBinEnv, filepath.Dir(fakeTool(t, filepath.Join(empty, "tools"))))
	if got, err := findBinary(); err != nil || got != filepath.Join(empty, "tools", "versitygw") {
		t.Errorf("with $%s: found %q (%v), want the one there", ToolsBinEnv, got, err)
	}

	t.Setenv(ToolsBinEnv, "")
	t.Chdir(empty)
	if got, err := findBinary(); err != nil || got != onPath {
		t.Errorf("outside the repository: found %q (%v), want $PATH's %s", got, err, onPath)
	}
}

// The Makefile installs the version the tests name.
func TestMakefileInstallsThePinnedVersion(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	_, version, _ := strings.Cut(InstallCommand, "@")
	if !strings.Contains(string(mk), "VERSITYGW_VERSION ?= "+version+"\n") {
		t.Errorf("the Makefile does not set VERSITYGW_VERSION ?= %s (InstallCommand: %s)", version, InstallCommand)
	}
}

func TestCleanStaleRemovesDeadOwnersDirectories(t *testing.T) {
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// PID 2^22+1 exceeds the default pid_max, so no process has it.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte("4194305"), 0o644); err != nil {
		t.Fatal(err)
	}
	cleanStale()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Fatalf("stale dir %s survived", dir)
	}
}

func TestSanitizeMakesValidBucketNames(t *testing.T) {
	for in, want := range map[string]string{
		"TestFoo/sub_test#01":     "testfoo-sub-test-01",
		"--x--":                   "x",
		strings.Repeat("Ab/", 30): "ab-ab-ab-ab-ab-ab-ab-ab-ab-ab-ab-ab-ab",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// The server must not outlive a test binary that dies without Stop, and
// the next Start must clean up after it.
func TestServerDiesWithTestBinary(t *testing.T) {
	if os.Getenv("S3TEST_CRASH_CHILD") == "1" {
		s, err := Start()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(s.cmd.Process.Pid, s.BaseDir)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestBinary$")
	cmd.Env = append(os.Environ(), "S3TEST_CRASH_CHILD=1")
	out, _ := cmd.Output()
	var pid int
	var base string
	if _, err := fmt.Sscan(string(out), &pid, &base); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("versitygw (pid %d) outlived its killed test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cleanStale()
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		os.RemoveAll(base)
		t.Errorf("%s survived cleanStale", base)
	}
}

// alive reports whether pid runs; a zombie (killed, not yet reaped by its
// new parent) does not.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}
