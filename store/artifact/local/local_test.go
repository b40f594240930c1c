package local_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/artifacttest"
	"github.com/btfu/btfu/store/artifact/local"
)

func TestContract(t *testing.T) {
	artifacttest.Run(t, func(t *testing.T) artifact.Store { return newStore(t, t.TempDir()) })
}

func newStore(t *testing.T, root string) *local.Store {
	t.Helper()
	s, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// files lists every file and directory below root with its permissions.
func files(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNewCreatesPrivateAbsoluteRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	s := newStore(t, "rel/data")
	if !filepath.IsAbs(s.Root()) || !strings.HasSuffix(s.Root(), filepath.FromSlash("/rel/data")) {
		t.Errorf("Root() = %q, want an absolute path ending in rel/data", s.Root())
	}
	if s.String() != "local:"+s.Root() {
		t.Errorf("String() = %q", s.String())
	}
	fi, err := os.Stat(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("root mode = %v, want 0700", fi.Mode().Perm())
	}
	if err := os.WriteFile("file", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.New("file"); err == nil {
		t.Error("New on a regular file succeeded")
	}
}

func TestFilesAndDirectoriesArePrivate(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	artifacttest.MustPut(t, s, "src/chain/dump", []byte("data"))
	want := map[string]fs.FileMode{
		"src":            fs.ModeDir | 0o700,
		"src/chain":      fs.ModeDir | 0o700,
		"src/chain/dump": 0o600,
	}
	got := files(t, root)
	if len(got) != len(want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	for name, mode := range want {
		if got[name] != mode {
			t.Errorf("%s: mode %v, want %v", name, got[name], mode)
		}
	}
}

type failing struct{ n int }

func (f *failing) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk on fire")
	}
	f.n--
	return copy(p, "chunk"), nil
}

func TestFailedPutLeavesNoTempFile(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	artifacttest.MustPut(t, s, "a/old", []byte("old"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, put := range []func() error{
		func() error { _, err := s.Put(context.Background(), "a/old", &failing{n: 3}); return err },
		func() error { _, err := s.Put(context.Background(), "a/new", &failing{n: 3}); return err },
		func() error { _, err := s.Put(ctx, "a/new", strings.NewReader("x")); return err },
		func() error { _, err := s.Put(context.Background(), "a/old/below", strings.NewReader("x")); return err },
	} {
		if err := put(); err == nil {
			t.Fatal("Put succeeded")
		}
	}
	got := files(t, root)
	if _, ok := got["a/old"]; !ok || len(got) != 2 {
		t.Errorf("files after failed puts = %v, want only a and a/old", got)
	}
	artifacttest.MustGet(t, s, "a/old")
}

func TestListSkipsTempFiles(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	artifacttest.MustPut(t, s, "a/b", []byte("b"))
	for _, p := range []string{".btfu-tmp-123", "a/.btfu-tmp-456", ".btfu-tmp-dir/x"} {
		p = filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Key != "a/b" {
		t.Errorf("List = %+v, want only a/b", infos)
	}
}
