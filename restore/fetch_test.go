package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
)

// watched wraps a real store: it counts the Gets in flight and makes each
// wait (up to half a second) until `gather` of them are, so that reading
// one segment after the other shows as a maximum of 1.
type watched struct {
	artifact.Store
	gather int
	mu     sync.Mutex
	cur    int
	max    int
	order  []string
	wake   chan struct{}
}

func (w *watched) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	w.mu.Lock()
	w.cur++
	w.max = max(w.max, w.cur)
	w.order = append(w.order, key)
	if w.cur >= w.gather {
		close(w.wake)
		w.wake = make(chan struct{})
	}
	wake := w.wake
	w.mu.Unlock()
	select {
	case <-wake:
	case <-time.After(500 * time.Millisecond):
	}
	rc, err := w.Store.Get(ctx, key)
	w.mu.Lock()
	w.cur--
	w.mu.Unlock()
	return rc, err
}

func storedSegments(t *testing.T, arts artifact.Store, n int) []store.Segment {
	t.Helper()
	var segs []store.Segment
	for i := range n {
		body := []byte(strings.Repeat(fmt.Sprintf("segment %d\n", i), 100+i))
		key := fmt.Sprintf("app/segments/1/%04d.ndjson.zst", i)
		if _, err := arts.Put(context.Background(), key, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		segs = append(segs, store.Segment{ArtifactKey: key, StoredBytes: int64(len(body)), SHA256: hex.EncodeToString(sum[:])})
	}
	return segs
}

// Segments are read concurrently, and handed to replay whole and in plan
// order; a corrupt one is named, the first in plan order when several are.
func TestSegmentsAreReadAheadInOrder(t *testing.T) {
	ctx := context.Background()
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	segs := storedSegments(t, dir, 3*readAhead)
	w := &watched{Store: dir, gather: 8, wake: make(chan struct{})}

	if err := verifyAll(ctx, w, segs, readAhead); err != nil {
		t.Fatal(err)
	}
	if w.max < 8 {
		t.Errorf("verification read at most %d segments at once; want them read concurrently", w.max)
	}

	w.max = 0
	pf := prefetch(ctx, w, segs, readAhead)
	for i, s := range segs {
		rc, err := pf.Next()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if want := fmt.Sprintf("segment %d\n", i); !strings.HasPrefix(string(got), want) || int64(len(got)) != s.StoredBytes {
			t.Fatalf("segment %d: got %d bytes starting %.20q", i, len(got), got)
		}
	}
	pf.Close()
	if w.max < 8 || w.max > readAhead {
		t.Errorf("replay read at most %d segments at once; want between 8 and %d", w.max, readAhead)
	}

	// Two corrupt segments: the earlier is named, whichever fails first.
	bad := segs
	bad[40].SHA256, bad[10].SHA256 = strings.Repeat("0", 64), strings.Repeat("0", 64)
	err = verifyAll(ctx, dir, bad, readAhead)
	if !errors.Is(err, ErrCorruptArtifact) || !strings.Contains(err.Error(), segs[10].ArtifactKey) {
		t.Fatalf("verify: %v, want %s named as corrupt", err, segs[10].ArtifactKey)
	}
	pf = prefetch(ctx, dir, bad, readAhead)
	defer pf.Close()
	for i := range 10 {
		rc, err := pf.Next()
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		rc.Close()
	}
	if _, err := pf.Next(); !errors.Is(err, ErrCorruptArtifact) {
		t.Fatalf("segment 10 replayed from a changed object: %v", err)
	}
}

// What is read ahead stays within the budget: a replay that holds every
// segment it was given (never closes them) gets no more than fit.
func TestReadAheadIsBounded(t *testing.T) {
	ctx := context.Background()
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	segs := storedSegments(t, dir, readAhead+8)
	w := &watched{Store: dir, gather: 1, wake: make(chan struct{})}
	pf := prefetch(ctx, w, segs, readAhead)
	defer pf.Close()
	for range readAhead {
		if _, err := pf.Next(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // room for a feeder that would read further
	w.mu.Lock()
	n := len(w.order)
	w.mu.Unlock()
	// The first is streamed: it holds none of the budget.
	if n != readAhead+1 {
		t.Fatalf("%d segments read while replay held %d; want at most %d", n, readAhead, readAhead+1)
	}
}

// btfu verify reads segments concurrently too, and reports them in order.
func TestVerifyReadsSegmentsConcurrently(t *testing.T) {
	e := capturing(t)
	ctx := context.Background()
	for i := range 10 {
		source.Exec(t, e.db, fmt.Sprintf("INSERT INTO items(name) VALUES ('segment %d')", i))
		time.Sleep(250 * time.Millisecond) // segment_max_age 200ms: one segment each
	}
	m := e.mark(t, "after")
	e.waitStored(t, m)
	w := &watched{Store: e.arts, gather: 4, wake: make(chan struct{})}
	rep, err := Verify(ctx, e.meta, w, e.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Segments < 5 {
		t.Fatalf("verify: %+v", rep)
	}
	if w.max < 4 {
		t.Errorf("verify read at most %d artifacts at once; want segments read concurrently", w.max)
	}
}

// gated holds back the second half of one object until gate is closed.
type gated struct {
	artifact.Store
	key  string
	gate chan struct{}
}

func (g *gated) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := g.Store.Get(ctx, key)
	if err != nil || key != g.key {
		return rc, err
	}
	return &halfGate{rc: rc, gate: g.gate}, nil
}

type halfGate struct {
	rc   io.ReadCloser
	gate chan struct{}
	n    int
}

func (h *halfGate) Read(b []byte) (int, error) {
	if h.n >= 500 {
		<-h.gate
	} else if len(b) > 500-h.n {
		b = b[:500-h.n]
	}
	n, err := h.rc.Read(b)
	h.n += n
	return n, err
}

func (h *halfGate) Close() error { return h.rc.Close() }

// A segment larger than the read-ahead budget is not held in memory: replay
// streams it from the store when it comes (its first bytes are there before
// its last are read), in order, and a stored object that differs from its
// record still fails when its bytes end.
func TestLargeSegmentsAreStreamed(t *testing.T) {
	ctx := context.Background()
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	segs := storedSegments(t, dir, 12)
	defer func(b int64) { readAheadBytes = b }(readAheadBytes)
	readAheadBytes = segs[5].StoredBytes // the first six fit, the rest do not
	segs[9].SHA256 = strings.Repeat("0", 64)
	g := &gated{Store: dir, key: segs[7].ArtifactKey, gate: make(chan struct{})}
	pf := prefetch(ctx, g, segs, readAhead)
	defer pf.Close()
	for i, s := range segs {
		type next struct {
			rc  io.ReadCloser
			err error
		}
		got := make(chan next, 1)
		go func() { rc, err := pf.Next(); got <- next{rc, err} }()
		var n next
		select {
		case n = <-got:
		case <-time.After(10 * time.Second):
			close(g.gate)
			t.Fatalf("segment %d is read whole before replay gets it", i)
		}
		if n.err != nil {
			t.Fatalf("segment %d: %v", i, n.err)
		}
		if i == 7 {
			head := make([]byte, 20)
			if _, err := io.ReadFull(n.rc, head); err != nil || !strings.HasPrefix(string(head), "segment 7\n") {
				t.Fatalf("segment 7 starts %q (%v)", head, err)
			}
			close(g.gate)
			rest, err := io.ReadAll(n.rc)
			n.rc.Close()
			if err != nil || int64(len(head)+len(rest)) != s.StoredBytes {
				t.Fatalf("segment 7: %d bytes, %v", len(head)+len(rest), err)
			}
			continue
		}
		data, err := io.ReadAll(n.rc)
		n.rc.Close()
		if i == 9 {
			if !errors.Is(err, ErrCorruptArtifact) {
				t.Fatalf("streamed segment 9, changed since its record: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if want := fmt.Sprintf("segment %d\n", i); !strings.HasPrefix(string(data), want) || int64(len(data)) != s.StoredBytes {
			t.Fatalf("segment %d: got %d bytes starting %.20q", i, len(data), data)
		}
	}
}

// Replay starts on the first segment's first bytes, not once it is read
// whole, and a first segment that differs from its record still fails
// when its bytes end.
func TestFirstSegmentIsStreamed(t *testing.T) {
	ctx := context.Background()
	dir, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, corrupt := range []bool{false, true} {
		segs := storedSegments(t, dir, 3)
		if corrupt {
			segs[0].SHA256 = strings.Repeat("0", 64)
		}
		g := &gated{Store: dir, key: segs[0].ArtifactKey, gate: make(chan struct{})}
		pf := prefetch(ctx, g, segs, readAhead)
		got := make(chan io.ReadCloser, 1)
		go func() {
			rc, err := pf.Next()
			if err != nil {
				t.Error(err)
			}
			got <- rc
		}()
		var rc io.ReadCloser
		select {
		case rc = <-got:
		case <-time.After(10 * time.Second):
			close(g.gate)
			t.Fatal("the first segment is read whole before replay gets it")
		}
		if rc == nil {
			t.FailNow()
		}
		head := make([]byte, 20)
		if _, err := io.ReadFull(rc, head); err != nil || !strings.HasPrefix(string(head), "segment 0\n") {
			t.Fatalf("segment 0 starts %q (%v)", head, err)
		}
		close(g.gate)
		rest, err := io.ReadAll(rc)
		rc.Close()
		switch {
		case corrupt && !errors.Is(err, ErrCorruptArtifact):
			t.Fatalf("first segment, changed since its record: %v", err)
		case !corrupt && (err != nil || int64(len(head)+len(rest)) != segs[0].StoredBytes):
			t.Fatalf("segment 0: %d bytes, %v", len(head)+len(rest), err)
		}
		pf.Close()
	}
}
