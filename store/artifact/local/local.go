// Package local is an artifact.Store in a directory tree: key "a/b/c" is
// the file <root>/a/b/c. Files are created 0600 and directories 0700.
//
// Put writes a temporary file next to its destination, syncs it and renames
// it into place, then syncs the directories, so a crash leaves either the
// old or the whole new object (plus possibly a temporary file, which List
// ignores). A key cannot name both an object and a "directory" of other
// objects ("a" and "a/b"); Put refuses the second one.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/btfu/btfu/store/artifact"
)

// Store is an artifact.Store rooted at an absolute directory.
type Store struct {
	root string
}

var _ artifact.Store = (*Store)(nil)

// New opens (creating it 0700 if missing) the directory root.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("local artifact store: empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local artifact store %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("local artifact store: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("local artifact store: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("local artifact store: %s is not a directory", abs)
	}
	return &Store{root: abs}, nil
}

// Root returns the absolute root directory.
func (s *Store) Root() string { return s.root }

// String returns "local:<root>".
func (s *Store) String() string { return "local:" + s.root }

func (s *Store) path(key string) (string, error) {
	if err := artifact.ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements artifact.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	p, err := s.path(key)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	n, err := s.put(ctx, p, r)
	if err != nil {
		return 0, fmt.Errorf("put %s in %s: %w", key, s, err)
	}
	return n, nil
}

func (s *Store) put(ctx context.Context, p string, r io.Reader) (n int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dir := filepath.Dir(p)
	created, err := mkdirs(s.root, dir)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, artifact.TempPrefix+"-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Hide File.ReadFrom so CopyBuffer uses our 1 MiB buffer, and check
	// ctx between reads.
	n, err = io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{ctx, r}, make([]byte, 1<<20))
	if err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, err
	}
	if err = f.Close(); err != nil {
		return 0, err
	}
	if err = ctx.Err(); err != nil {
		return 0, err
	}
	if err = os.Rename(tmp, p); err != nil {
		return 0, err
	}
	// Make the rename and any new directories durable: sync dir and the
	// parent of every directory we created (the chain up to the first
	// directory that already existed).
	for _, d := range append([]string{dir}, parents(created)...) {
		if err := syncDir(d); err != nil {
			return n, err
		}
	}
	return n, nil
}

// mkdirs creates dir and its missing parents below root (0700) and returns
// the directories it created, deepest first.
func mkdirs(root, dir string) ([]string, error) {
	var missing []string
	for d := dir; d != root && len(d) > len(root); d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err == nil {
			created = append([]string{missing[i]}, created...)
		} else if !errors.Is(err, fs.ErrExist) { // a concurrent Put may win
			return nil, err
		}
	}
	return created, nil
}

func parents(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Dir(d)
	}
	return out
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Get implements artifact.Store. Reads from the returned file fail once
// ctx ends.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(p)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
			err = fs.ErrNotExist
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", key, s, notFound(err))
	}
	return ctxReadCloser{ctxReader{ctx, f}, f}, nil
}

// Stat implements artifact.Store.
func (s *Store) Stat(ctx context.Context, key string) (artifact.Info, error) {
	p, err := s.path(key)
	if err != nil {
		return artifact.Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return artifact.Info{}, fmt.Errorf("stat %s in %s: %w", key, s, notFound(err))
	}
	return artifact.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements artifact.Store. It walks only the directory that prefix
// fully names.
func (s *Store) List(ctx context.Context, prefix string) ([]artifact.Info, error) {
	if err := artifact.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	out := []artifact.Info{}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == start && d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), artifact.TempPrefix) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil // an in-flight Put
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip subtrees that cannot contain a match.
			if !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		} else if err != nil {
			return err
		}
		out = append(out, artifact.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q in %s: %w", prefix, s, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements artifact.Store. Emptied directories are left in place.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err := os.Lstat(p)
	if err == nil && fi.IsDir() {
		return nil // a "directory" of other keys, not an object
	}
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil && !errors.Is(notFound(err), artifact.ErrNotFound) {
		return fmt.Errorf("delete %s from %s: %w", key, s, err)
	}
	return nil
}

// notFound maps "no such file" (including a file where a directory was
// expected) to artifact.ErrNotFound, keeping the original error.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %w", artifact.ErrNotFound, err)
	}
	return err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type ctxReadCloser struct {
	ctxReader
	io.Closer
}
