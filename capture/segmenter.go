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

	prevEnd  stream.LSN // end LSN of the chain's last stored segment (or its start)
	file     *os.File
	w        *segment.Writer
	openedAt time.Time
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
		f.Close()
		os.Remove(f.Name())
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
// with a segment open, once that segment is stored.
func (s *segmenter) markIdle(ctx context.Context, ev stream.Event) error {
	return s.cp.markIdle(ctx, ev, s.w != nil)
}

// due reports whether the open segment has held traffic for maxAge.
func (s *segmenter) due() bool {
	return s.w != nil && s.w.TxCount() > 0 && time.Since(s.openedAt) >= s.maxAge
}

// flush closes the open segment, stores it, records it (which advances the
// chain's cursor) and then has the checkpoint acknowledge its end. An empty
// segment is dropped.
func (s *segmenter) flush(ctx context.Context) error {
	if s.w == nil {
		return nil
	}
	w, f := s.w, s.file
	s.w, s.file = nil, nil
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	if w.TxCount() == 0 {
		return nil
	}
	sum, err := w.Close()
	if err != nil {
		return fmt.Errorf("finish segment: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return fmt.Errorf("rewind segment: %w", err)
	}
	key := segment.ObjectKey(s.source, s.chain.ID, sum.FirstCommitLSN, sum.EndLSN)
	// The spool file must be what the writer wrote; what is stored (and
	// recorded: size and checksum) may differ when the store encrypts.
	given := &hashCounter{h: sha256.New()}
	size, sha, err := artifact.PutHashed(ctx, s.artifacts, key, io.TeeReader(f, given))
	if err != nil {
		return fmt.Errorf("store segment %s: %w", key, err)
	}
	if got := hex.EncodeToString(given.h.Sum(nil)); got != sum.SHA256 || given.n != sum.StoredBytes {
		return fmt.Errorf("store segment %s: read %d bytes with SHA-256 %s from the spool file, wrote %d with %s", key, given.n, got, sum.StoredBytes, sum.SHA256)
	}
	seg, err := s.meta.AddSegment(ctx, store.Segment{
		SourceID: s.sourceID, ChainID: s.chain.ID, FormatVersion: sum.Format, ArtifactKey: key,
		FirstCommitLSN: sum.FirstCommitLSN, LastCommitLSN: sum.LastCommitLSN, EndLSN: sum.EndLSN, PrevEndLSN: sum.PrevEndLSN,
		FirstCommitAt: sum.FirstCommitAt, LastCommitAt: sum.LastCommitAt, TxCount: sum.TxCount, ChangeCount: sum.ChangeCount,
		RawBytes: sum.RawBytes, StoredBytes: size, SHA256: sha,
	})
	if err != nil {
		return fmt.Errorf("record segment %s: %w", key, err)
	}
	s.prevEnd = sum.EndLSN
	s.cp.segmentStored(seg)
	if s.onStored != nil {
		s.onStored(seg)
	}
	return s.cp.afterFlush(ctx)
}

// discard drops an open segment without storing it (its transactions are
// not acknowledged, so the server sends them again).
func (s *segmenter) discard() {
	if s.file != nil {
		s.file.Close()
		os.Remove(s.file.Name())
	}
	s.w, s.file = nil, nil
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
