package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// Segments are small objects, and an object store answers each request
// after a first-byte latency of tens of milliseconds: read one after the
// other, a day of one-second segments costs an hour of waiting. Restore
// reads them concurrently, still in two passes (every checksum before
// anything is written to the target, DESIGN 4.3, then replay in order),
// holding at most Options.ReadAhead (default readAhead) segments and
// readAheadBytes in memory.
const readAhead = 32

// readAheadBytes bounds the memory of read-ahead; a segment larger than it
// is streamed from the store when replay reaches it (a var for tests).
var readAheadBytes int64 = 64 << 20

// verifyAll checks the checksum of every segment, readAhead at a time. The
// error is that of the first bad segment in plan order, whatever finished
// first: after a failure, segments later in the plan are no longer read,
// earlier ones still are.
func verifyAll(ctx context.Context, arts artifact.Store, segs []store.Segment, ahead int) error {
	errs := make([]error, len(segs))
	var mu sync.Mutex
	failedAt := len(segs)
	later := func(i int) bool { mu.Lock(); defer mu.Unlock(); return i > failedAt || ctx.Err() != nil }
	concurrently(len(segs), ahead, later, func(i int) {
		if errs[i] = verify(ctx, arts, segs[i].ArtifactKey, segs[i].SHA256); errs[i] != nil {
			mu.Lock()
			failedAt = min(failedAt, i)
			mu.Unlock()
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// concurrently runs do(i) for every i below n, up to workers at once,
// handing them out in order; once stop(i) (nil: never) says so for an i,
// no further i is handed out, and workers skip those stop names.
func concurrently(n, workers int, stop func(i int) bool, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(workers, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if stop == nil || !stop(i) {
					do(i)
				}
			}
		}()
	}
	for i := range n {
		if stop != nil && stop(i) {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

// prefetcher reads the plan's segments ahead of replay, in order.
type prefetcher struct {
	ctx     context.Context
	cancel  context.CancelFunc
	segs    []store.Segment
	results []chan fetched
	// released carries the bytes of a segment replay is done with, so the
	// feeder may read further.
	released chan int64
	next     int
	ahead    int
	arts     artifact.Store
	done     chan struct{}
}

type fetched struct {
	data []byte
	err  error
	// stream: the segment is the first, or larger than the read-ahead
	// budget; replay reads it from the store when its turn comes,
	// checking its checksum as it goes.
	stream bool
}

// prefetch starts reading segs ahead; Close stops it.
func prefetch(ctx context.Context, arts artifact.Store, segs []store.Segment, ahead int) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	ahead = max(ahead, 1)
	p := &prefetcher{ctx: ctx, cancel: cancel, segs: segs, results: make([]chan fetched, len(segs)),
		released: make(chan int64, ahead+1), ahead: ahead, arts: arts, done: make(chan struct{})}
	for i := range p.results {
		p.results[i] = make(chan fetched, 1)
	}
	go p.feed(arts)
	return p
}

// cost is what a segment holds of the budget: its stored size.
func cost(s store.Segment) int64 { return max(s.StoredBytes, 1) }

func (p *prefetcher) feed(arts artifact.Store) {
	defer close(p.done)
	var used int64
	inFlight := 0
	for i, s := range p.segs {
		need := cost(s)
		// The first segment is streamed too: replay starts on its first
		// bytes instead of waiting for it whole (nothing is ahead yet).
		if i == 0 || need > readAheadBytes {
			p.results[i] <- fetched{stream: true}
			continue
		}
		for inFlight >= p.ahead || used+need > readAheadBytes {
			select {
			case n := <-p.released:
				used -= n
				inFlight--
			case <-p.ctx.Done():
				return
			}
		}
		used += need
		inFlight++
		go func() {
			data, err := readSegment(p.ctx, arts, s)
			p.results[i] <- fetched{data: data, err: err}
		}()
	}
}

// readSegment reads a whole segment's stored bytes (below any layer: the
// record's checksum is of those) and checks them against its record
// again: the object may have changed since the verification pass.
func readSegment(ctx context.Context, arts artifact.Store, s store.Segment) ([]byte, error) {
	rc, err := artifact.Stored(arts).Get(ctx, s.ArtifactKey)
	if err != nil {
		return nil, fmt.Errorf("read segment %s: %w", s.ArtifactKey, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if s.StoredBytes > 0 && s.StoredBytes <= readAheadBytes {
		buf.Grow(int(s.StoredBytes))
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(&buf, h), rc); err != nil {
		return nil, fmt.Errorf("read segment %s: %w", s.ArtifactKey, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return nil, fmt.Errorf("artifact %s: %w (stored %s, recorded %s)", s.ArtifactKey, ErrCorruptArtifact, got, s.SHA256)
	}
	return buf.Bytes(), nil
}

// Next returns the next segment's stored bytes; closing the reader gives
// its share of the budget back.
func (p *prefetcher) Next() (io.ReadCloser, error) {
	i := p.next
	p.next++
	select {
	case f := <-p.results[i]:
		if f.stream {
			return p.stream(p.segs[i])
		}
		r := &prefetched{p: p, n: cost(p.segs[i])}
		if f.err != nil {
			r.Close()
			return nil, f.err
		}
		// The layers (decryption) turn stored bytes into the segment.
		content, err := artifact.Decode(p.arts, p.segs[i].ArtifactKey, bytes.NewReader(f.data))
		if err != nil {
			r.Close()
			return nil, err
		}
		r.Reader = content
		return r, nil
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

// Close stops reading ahead and waits for the feeder.
func (p *prefetcher) Close() {
	p.cancel()
	<-p.done
}

type prefetched struct {
	io.Reader
	p    *prefetcher
	n    int64 // its share of the budget, given back on Close
	once sync.Once
}

func (r *prefetched) Close() error {
	r.once.Do(func() {
		select {
		case r.p.released <- r.n:
		case <-r.p.ctx.Done():
		}
	})
	return nil
}

// stream opens a segment too large to hold in memory: replay reads it
// from the store, and its checksum is checked when the stored bytes end
// (the verification pass checked it whole before anything was written).
func (p *prefetcher) stream(s store.Segment) (io.ReadCloser, error) {
	rc, err := artifact.Stored(p.arts).Get(p.ctx, s.ArtifactKey)
	if err != nil {
		return nil, fmt.Errorf("read segment %s: %w", s.ArtifactKey, err)
	}
	checked := &checkedReader{r: rc, h: sha256.New(), s: s}
	content, err := artifact.Decode(p.arts, s.ArtifactKey, checked)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{content, rc}, nil
}

// checkedReader hashes what it reads and, at the end of the stored bytes,
// fails when they are not what the segment's record says.
type checkedReader struct {
	r io.Reader
	h hash.Hash
	s store.Segment
}

func (c *checkedReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.s.SHA256 {
			return n, fmt.Errorf("artifact %s: %w (stored %s, recorded %s)", c.s.ArtifactKey, ErrCorruptArtifact, got, c.s.SHA256)
		}
	}
	return n, err
}
