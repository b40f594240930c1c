// Package artifacttest is the contract suite every artifact.Store must pass.
//
//	func TestContract(t *testing.T) {
//		artifacttest.Run(t, func(t *testing.T) artifact.Store { return newEmptyStore(t) })
//	}
//
// newStore must return an empty store each time. Objects bigger than 5 MiB
// (the S3 minimum part size) are used, so a multipart store configured with
// that part size goes through its multipart path.
//
// A transforming layer (artifact.Layer) passes the same suite: sizes and
// checksums it reports must be those of the bytes the store below holds,
// and Get must return what was put.
package artifacttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btfu/btfu/store/artifact"
)

const (
	// PartSize is the multipart part size stores under test should use.
	PartSize = 5 << 20
	// bigSize spans more than two parts.
	bigSize = 12 << 20
)

// Run runs the contract suite; each subtest gets a fresh store.
func Run(t *testing.T, newStore func(t *testing.T) artifact.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, artifact.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"PutHashed", testPutHashed},
		{"FailingReader", testFailingReader},
		{"CancelledPut", testCancelledPut},
		{"CancelledGet", testCancelledGet},
		{"ConcurrentPuts", testConcurrentPuts},
		{"StreamsWithBoundedMemory", testStreaming},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s.String() == "" {
				t.Error("String() is empty")
			}
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Data returns n deterministic pseudo-random bytes for seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = stream(seed).Read(b)
	return b
}

func stream(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// MustPut stores data under key and fails the test on error.
func MustPut(t *testing.T, s artifact.Store, key string, data []byte) {
	t.Helper()
	n, err := s.Put(ctx(t), key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if want := storedSize(t, s, key, int64(len(data))); n != want {
		t.Fatalf("Put(%q) = %d bytes, want %d", key, n, want)
	}
}

// storedSize is the size the store reports for an object of plain bytes:
// plain itself, or for a Layer the size of what the store below holds.
func storedSize(t *testing.T, s artifact.Store, key string, plain int64) int64 {
	t.Helper()
	if _, ok := s.(artifact.Layer); !ok {
		return plain
	}
	info, err := artifact.Stored(s).Stat(ctx(t), key)
	if err != nil {
		t.Fatalf("Stat(%q) below the layer: %v", key, err)
	}
	return info.Size
}

// storedSHA256 is the SHA-256 of the bytes the store below every layer
// holds under key.
func storedSHA256(t *testing.T, s artifact.Store, key string) string {
	t.Helper()
	rc, err := artifact.Stored(s).Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q) below the layer: %v", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MustGet reads the whole object under key and fails the test on error.
func MustGet(t *testing.T, s artifact.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return b
}

func wantContent(t *testing.T, s artifact.Store, key string, want []byte) {
	t.Helper()
	if got := MustGet(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q): %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			key, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func wantKeys(t *testing.T, s artifact.Store, prefix string, want ...string) []artifact.Info {
	t.Helper()
	infos, err := s.List(ctx(t), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	got := make([]string, len(infos))
	for i, in := range infos {
		got[i] = in.Key
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
	}
	return infos
}

func wantNotFound(t *testing.T, s artifact.Store, key string) {
	t.Helper()
	if _, err := s.Stat(ctx(t), key); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Stat(%q) error = %v, want ErrNotFound", key, err)
	}
	rc, err := s.Get(ctx(t), key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
	}
}

func testRoundTrip(t *testing.T, s artifact.Store) {
	for _, tc := range []struct {
		name, key string
		size      int
	}{
		{"empty", "empty", 0},
		{"small", "a/b/small.bin", 5},
		{"one part exactly", "exact", PartSize},
		{"multipart", "big/dump.pgdump", bigSize},
		{"unicode and spaces", "with space/ünï-ключ", 100},
		{"dot names", "a/.hidden/..b/c.btfu-tmp", 10},
		{"long key", strings.Repeat(strings.Repeat("k", 49)+"/", 10) + "end", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := Data(uint64(tc.size), tc.size)
			before := time.Now()
			MustPut(t, s, tc.key, data)
			wantContent(t, s, tc.key, data)
			info, err := s.Stat(ctx(t), tc.key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if want := storedSize(t, s, tc.key, int64(tc.size)); info.Key != tc.key || info.Size != want {
				t.Errorf("Stat = %+v, want key %q size %d", info, tc.key, want)
			}
			if d := info.ModTime.Sub(before); d < -time.Hour || d > time.Hour {
				t.Errorf("Stat ModTime = %v, want about %v", info.ModTime, before)
			}
			wantKeys(t, s, tc.key, tc.key)
		})
	}
}

func testOverwrite(t *testing.T, s artifact.Store) {
	for i, size := range []int{bigSize, 10, 0, 3} {
		data := Data(uint64(i), size)
		MustPut(t, s, "k", data)
		wantContent(t, s, "k", data)
		if info, err := s.Stat(ctx(t), "k"); err != nil || info.Size != storedSize(t, s, "k", int64(size)) {
			t.Fatalf("after put #%d: Stat = %+v, %v; want size %d", i, info, err, storedSize(t, s, "k", int64(size)))
		}
	}
	wantKeys(t, s, "", "k")
}

func testNotFound(t *testing.T, s artifact.Store) {
	wantNotFound(t, s, "missing")
	MustPut(t, s, "dir/file", []byte("x"))
	for _, key := range []string{
		"missing",
		"dir",            // only a "directory" of other keys
		"dir/file/below", // below an object
		"dir/fil",        // prefix of a key
		"other/file",
	} {
		wantNotFound(t, s, key)
	}
}

func testDelete(t *testing.T, s artifact.Store) {
	MustPut(t, s, "d/a", []byte("a"))
	MustPut(t, s, "d/b", []byte("b"))
	for _, key := range []string{"d/a", "d/a", "never", "d", "d/b/c"} {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	wantNotFound(t, s, "d/a")
	wantContent(t, s, "d/b", []byte("b"))
	wantKeys(t, s, "", "d/b")
	// The key can be used again after deletion.
	MustPut(t, s, "d/a", []byte("again"))
	wantContent(t, s, "d/a", []byte("again"))
}

func testList(t *testing.T, s artifact.Store) {
	keys := []string{"ab", "a/c/3", "b/1", "a/b/2", "a-x", "a/bc", "a/b/1", "b2"}
	for i, k := range keys {
		MustPut(t, s, k, Data(uint64(i), i+1))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-x", "a/b/1", "a/b/2", "a/bc", "a/c/3", "ab", "b/1", "b2"}},
		{"a", []string{"a-x", "a/b/1", "a/b/2", "a/bc", "a/c/3", "ab"}},
		{"a/", []string{"a/b/1", "a/b/2", "a/bc", "a/c/3"}},
		{"a/b", []string{"a/b/1", "a/b/2", "a/bc"}},
		{"a/b/", []string{"a/b/1", "a/b/2"}},
		{"a/b/1", []string{"a/b/1"}},
		{"a/b/1/", nil},
		{"b", []string{"b/1", "b2"}},
		{"b/", []string{"b/1"}},
		{"c", nil},
		{"c/d/", nil},
		{"ab/", nil},
	} {
		t.Run(fmt.Sprintf("prefix=%q", tc.prefix), func(t *testing.T) {
			infos := wantKeys(t, s, tc.prefix, tc.want...)
			if infos == nil {
				t.Errorf("List(%q) returned nil, want an empty slice", tc.prefix)
			}
			for _, in := range infos {
				i := indexOf(keys, in.Key)
				if want := storedSize(t, s, in.Key, int64(i+1)); in.Size != want || in.ModTime.IsZero() {
					t.Errorf("List(%q): %+v, want size %d and a ModTime", tc.prefix, in, want)
				}
			}
		})
	}
}

func indexOf(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

func testInvalidKeys(t *testing.T, s artifact.Store) {
	MustPut(t, s, "a/b", []byte("x"))
	for _, key := range []string{
		"", "/a", "a/", "/", "a//b", ".", "..", "a/./b", "a/../b", "../a", "a/..",
		`a\b`, "a\x00b", "\xff", strings.Repeat("a", artifact.MaxKeyLen+1),
		".btfu-tmp", "a/.btfu-tmp-123", ".btfu-tmpfoo/b",
	} {
		if artifact.ValidateKey(key) == nil {
			t.Errorf("ValidateKey(%q) accepted it", key)
		}
		bad := func(op string, err error) {
			if err == nil || errors.Is(err, artifact.ErrNotFound) {
				t.Errorf("%s(%.30q) error = %v, want a validation error", op, key, err)
			}
		}
		_, err := s.Put(ctx(t), key, strings.NewReader("data"))
		bad("Put", err)
		rc, err := s.Get(ctx(t), key)
		if err == nil {
			rc.Close()
		}
		bad("Get", err)
		_, err = s.Stat(ctx(t), key)
		bad("Stat", err)
		bad("Delete", s.Delete(ctx(t), key))
	}
	for _, prefix := range []string{"/", "/a", "a//", "../", "a/../", `a\`, "\x00", ".btfu-tmp"} {
		if _, err := s.List(ctx(t), prefix); err == nil {
			t.Errorf("List(%q) accepted the prefix", prefix)
		}
	}
	wantKeys(t, s, "", "a/b")
	wantContent(t, s, "a/b", []byte("x"))
}

func testPutHashed(t *testing.T, s artifact.Store) {
	for _, size := range []int{0, 1000, bigSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := Data(7, size)
			key := fmt.Sprintf("hashed/%d", size)
			n, sum, err := artifact.PutHashed(ctx(t), s, key, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(data)
			wantSum := hex.EncodeToString(want[:])
			if _, ok := s.(artifact.Layer); ok {
				wantSum = storedSHA256(t, s, key)
			}
			if wantN := storedSize(t, s, key, int64(size)); n != wantN || sum != wantSum {
				t.Errorf("PutHashed = %d, %s; want %d, %s", n, sum, wantN, wantSum)
			}
			wantContent(t, s, key, data)
		})
	}
}

var errBoom = errors.New("boom: source failed")

// failAfter yields n bytes of r, then err.
type failAfter struct {
	r   io.Reader
	n   int64
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func testFailingReader(t *testing.T, s artifact.Store) {
	old := []byte("the old object")
	for _, n := range []int64{0, 100, PartSize + 1<<20, 2*PartSize + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			MustPut(t, s, "obj", old)
			for _, key := range []string{"obj", "fresh"} {
				_, err := s.Put(ctx(t), key, &failAfter{r: stream(1), n: n, err: errBoom})
				if !errors.Is(err, errBoom) {
					t.Fatalf("Put(%q) with failing reader: error = %v, want it to wrap %v", key, err, errBoom)
				}
			}
			wantContent(t, s, "obj", old)
			wantNotFound(t, s, "fresh")
			wantKeys(t, s, "", "obj")
		})
	}
}

// cancelAfter calls cancel once n bytes have been read, and keeps going.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func testCancelledPut(t *testing.T, s artifact.Store) {
	old := []byte("the old object")
	for _, tc := range []struct {
		name  string
		after int64 // -1: cancelled before Put
		size  int64
	}{
		{"before", -1, 1000},
		{"small", 10, 1000},
		{"midway", PartSize + 1<<20, bigSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			MustPut(t, s, "obj", old)
			for _, key := range []string{"obj", "fresh"} {
				c, cancel := context.WithCancel(ctx(t))
				var r io.Reader = io.LimitReader(stream(2), tc.size)
				if tc.after < 0 {
					cancel()
				} else {
					r = &cancelAfter{r: r, n: tc.after, cancel: cancel}
				}
				_, err := s.Put(c, key, r)
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Put(%q): error = %v, want context.Canceled", key, err)
				}
			}
			wantContent(t, s, "obj", old)
			wantNotFound(t, s, "fresh")
			wantKeys(t, s, "", "obj")
		})
	}
}

func testCancelledGet(t *testing.T, s artifact.Store) {
	MustPut(t, s, "obj", Data(3, bigSize))
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	rc, err := s.Get(c, "obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		t.Errorf("reading after cancel: read %d more bytes and no error", n)
	}
	c, cancel = context.WithCancel(ctx(t))
	cancel()
	if rc, err := s.Get(c, "obj"); err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil {
			t.Errorf("Get with a cancelled context read the object")
		}
	}
}

func testConcurrentPuts(t *testing.T, s artifact.Store) {
	const writers = 4
	datas := make([][]byte, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		datas[i] = Data(uint64(100+i), 256<<10+i)
		wg.Go(func() {
			if _, err := s.Put(ctx(t), "same/key", bytes.NewReader(datas[i])); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := MustGet(t, s, "same/key")
	if indexOfData(datas, got) < 0 {
		t.Errorf("after concurrent puts the object (%d bytes) is none of the writers' data", len(got))
	}
	wantKeys(t, s, "", "same/key")
}

func indexOfData(datas [][]byte, b []byte) int {
	for i, d := range datas {
		if bytes.Equal(d, b) {
			return i
		}
	}
	return -1
}

// testStreaming puts and gets an object much bigger than the heap growth it
// allows, so a store that buffers whole objects fails.
func testStreaming(t *testing.T, s artifact.Store) {
	const size, limit = 128 << 20, 64 << 20
	base := liveHeap(true)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if h := liveHeap(false); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	put := sha256.New()
	n, _, err := artifact.PutHashed(ctx(t), s, "huge", io.TeeReader(io.LimitReader(stream(9), size), put))
	if err == nil {
		var rc io.ReadCloser
		if rc, err = s.Get(ctx(t), "huge"); err == nil {
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if got, want := hex.EncodeToString(h.Sum(nil)), hex.EncodeToString(put.Sum(nil)); err == nil && got != want {
				t.Errorf("Get returned sha256 %s, Put was given %s", got, want)
			}
		}
	}
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("put/get %d bytes: %v", size, err)
	}
	if want := storedSize(t, s, "huge", size); n != want {
		t.Fatalf("put %d bytes: PutHashed says %d stored, want %d", size, n, want)
	}
	if grew := int64(peak.Load()) - int64(base); grew > limit {
		t.Errorf("live heap grew by %d MiB while streaming %d MiB; want at most %d MiB",
			grew>>20, size>>20, limit>>20)
	}
	t.Logf("live heap grew by at most %d MiB", (int64(peak.Load())-int64(base))>>20)
}

// liveHeap returns the heap marked live by the last GC (optionally forcing
// one first), which unlike heap-in-use ignores garbage awaiting collection.
func liveHeap(gc bool) uint64 {
	if gc {
		runtime.GC()
	}
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}
