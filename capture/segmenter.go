package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/stream"
)

// segmenter writes transactions into segments, stores each segment and
// records it; the checkpoint then moves the acknowledged position (DESIGN
// 3.1).
type segmenter struct {
	source    string
	sourceID  int64
	chain     store.Chain
	meta      store.Store
	artifacts artifact.Store
	spoolDir  string
	maxSize   int64
	maxAge    time.Duration
	cp        *checkpoint
	onStored  func(store.Segment)
	onAdded   func(rawBytes int64) // one transaction written to the open segment

	prevEnd  stream.LSN // end LSN of the chain's last sealed segment (or its start)
	file     *os.File
	w        *segment.Writer
	openedAt time.Time

	// Sealed segments are stored and recorded by one uploader goroutine,
	// in order, while the next segment is written; the run loop applies
	// each result (apply), so the checkpoint is only ever touched there.
	up       chan sealed // to the uploader
	results  chan uploaded
	upCancel context.CancelFunc // aborts the upload in progress (discard)
	upDone   chan struct{}      // closed when the uploader has exited
	inFlight int                // sealed, result not applied yet
}

// maxInFlight: sealed segments not yet applied, at most (one uploading,
// one waiting): the spool disk a slow store can fill stays bounded.
const maxInFlight = 2

// sealed is a closed segment waiting to be stored and recorded.
type sealed struct {
	f   *os.File
	sum segment.Summary
	key string
}

// uploaded is the uploader's result for one sealed segment.
type uploaded struct {
	seg store.Segment
	err error
}

// open starts a segment when none is open.
func (s *segmenter) open() error {
	if s.w != nil {
		return nil
	}
	f, err := os.CreateTemp(s.spoolDir, "segment-*.ndjson.zst")
	if err != nil {
		return fmt.Errorf("stage segment: %w", err)
	}
	w, err := segment.NewWriter(f, segment.Header{Source: s.source, ChainID: s.chain.ID, PrevEndLSN: segment.TextLSN(s.prevEnd)}, zstd.SpeedFastest)
	if err != nil {
		removeSpool(f)
		return err
	}
	s.file, s.w, s.openedAt = f, w, time.Now()
	return nil
}

// add writes one committed transaction, rotating by size.
func (s *segmenter) add(ctx context.Context, tx *stream.Tx) error {
	defer tx.Release()
	if err := s.open(); err != nil {
		return err
	}
	before := s.w.RawBytes()
	if err := tx.WriteTo(s.w); err != nil {
		return fmt.Errorf("write transaction %d to segment: %w", tx.Info.XID, err)
	}
	if s.onAdded != nil {
		s.onAdded(s.w.RawBytes() - before)
	}
	s.cp.dataArrived()
	if s.w.RawBytes() >= s.maxSize {
		return s.flush(ctx)
	}
	return nil
}

// markIdle hands an idle mark to the checkpoint, which applies it now or,
// with a segment open or being stored, once every one is stored.
func (s *segmenter) markIdle(ctx context.Context, ev stream.Event) error {
	return s.cp.markIdle(ctx, ev, s.pending())
}

// pending: a segment is open, or sealed and not yet stored and recorded.
func (s *segmenter) pending() bool { return s.w != nil || s.inFlight > 0 }

// due reports whether the open segment has held traffic for maxAge.
func (s *segmenter) due() bool {
	return s.w != nil && s.w.TxCount() > 0 && time.Since(s.openedAt) >= s.maxAge
}

// flush closes the open segment and hands it to the uploader, which
// stores and records it (recording advances the chain's cursor); the run
// loop then applies the result (apply), and the checkpoint acknowledges
// its end. With maxInFlight segments already handed over, it first waits
// for the oldest. An empty segment is dropped.
func (s *segmenter) flush(ctx context.Context) error {
	if s.w == nil {
		return nil
	}
	w, f := s.w, s.file
	s.w, s.file = nil, nil
	if w.TxCount() == 0 {
		removeSpool(f)
		return nil
	}
	sum, err := w.Close()
	if err == nil {
		_, err = f.Seek(0, 0)
	}
	if err != nil {
		removeSpool(f)
		return fmt.Errorf("finish segment: %w", err)
	}
	for s.inFlight >= maxInFlight {
		if err := s.apply(ctx, <-s.results); err != nil {
			removeSpool(f)
			return err
		}
	}
	if s.up == nil {
		// Not cut short by the capture's end: drain waits for what was
		// handed over, and discard aborts what is left.
		up, cancel := context.WithCancel(context.WithoutCancel(ctx))
		s.upCancel = cancel
		s.startUploader(up)
	}
	// The next segment continues this one, whether or not it is stored
	// yet: segments are recorded in order, and nothing after a failure.
	s.prevEnd = sum.EndLSN
	s.inFlight++
	s.up <- sealed{f: f, sum: sum, key: segment.ObjectKey(s.source, s.chain.ID, sum.FirstCommitLSN, sum.EndLSN)}
	return nil
}

// apply takes one uploader result: the cursor moves to the segment's end
// and, once nothing is pending, a waiting idle mark applies.
func (s *segmenter) apply(ctx context.Context, res uploaded) error {
	s.inFlight--
	if res.err != nil {
		return res.err
	}
	s.recorded(res.seg)
	if s.pending() {
		return nil
	}
	return s.cp.afterFlush(ctx)
}

// recorded moves the cursor to the end of a segment just recorded.
func (s *segmenter) recorded(seg store.Segment) {
	s.cp.segmentStored(seg)
	if s.onStored != nil {
		s.onStored(seg)
	}
}

// wait applies the results of every segment handed over.
func (s *segmenter) wait(ctx context.Context) error {
	for s.inFlight > 0 {
		select {
		case res := <-s.results:
			if err := s.apply(ctx, res); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// startUploader starts the goroutine that stores and records sealed
// segments in order. After a failure it records nothing more (a gap in
// the chain must never be recorded): the segments after it are dropped,
// and received again after the reconnect.
func (s *segmenter) startUploader(ctx context.Context) {
	s.up = make(chan sealed, maxInFlight)
	s.results = make(chan uploaded, maxInFlight)
	s.upDone = make(chan struct{})
	go func() {
		defer close(s.upDone)
		var failed error
		for job := range s.up {
			res := uploaded{err: failed}
			if failed == nil {
				res.seg, res.err = s.store(ctx, job)
				failed = res.err
			}
			removeSpool(job.f)
			s.results <- res
		}
	}()
}

// store puts one sealed segment and records it.
func (s *segmenter) store(ctx context.Context, job sealed) (store.Segment, error) {
	sum, key := job.sum, job.key
	// The spool file must be what the writer wrote; what is stored (and
	// recorded: size and checksum) may differ when the store encrypts.
	given := &hashCounter{h: sha256.New()}
	size, sha, err := artifact.PutHashed(ctx, s.artifacts, key, io.TeeReader(job.f, given))
	if err != nil {
		return store.Segment{}, fmt.Errorf("store segment %s: %w", key, err)
	}
	if got := hex.EncodeToString(given.h.Sum(nil)); got != sum.SHA256 || given.n != sum.StoredBytes {
		return store.Segment{}, fmt.Errorf("store segment %s: read %d bytes with SHA-256 %s from the spool file, wrote %d with %s", key, given.n, got, sum.StoredBytes, sum.SHA256)
	}
	seg, err := s.meta.AddSegment(ctx, store.Segment{
		SourceID: s.sourceID, ChainID: s.chain.ID, FormatVersion: sum.Format, ArtifactKey: key,
		FirstCommitLSN: sum.FirstCommitLSN, LastCommitLSN: sum.LastCommitLSN, EndLSN: sum.EndLSN, PrevEndLSN: sum.PrevEndLSN,
		FirstCommitAt: sum.FirstCommitAt, LastCommitAt: sum.LastCommitAt, TxCount: sum.TxCount, ChangeCount: sum.ChangeCount,
		RawBytes: sum.RawBytes, StoredBytes: size, SHA256: sha,
	})
	if err != nil {
		return store.Segment{}, fmt.Errorf("record segment %s: %w", key, err)
	}
	return seg, nil
}

// discard drops an open segment without storing it (its transactions are
// not acknowledged, so the server sends them again) and stops the
// uploader, aborting what it has not stored yet (drain waits for it
// first); what it did store is applied, so the cursor shows it.
func (s *segmenter) discard() {
	if s.file != nil {
		removeSpool(s.file)
	}
	s.w, s.file = nil, nil
	if s.up != nil {
		s.upCancel()
		close(s.up)
		<-s.upDone
		for ; s.inFlight > 0; s.inFlight-- {
			if res := <-s.results; res.err == nil {
				s.recorded(res.seg)
			}
		}
		s.up = nil
	}
	s.cp.discard()
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// removeSpool closes and deletes a segment's spool file.
func removeSpool(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}
