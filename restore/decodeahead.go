package restore

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/btfu/btfu/segment"
)

// Replay decodes a segment ahead of applying it: decompressing and
// parsing records runs on its own goroutine while the target works on the
// statements already sent, a bounded number of records and of bytes of
// values ahead.

const (
	decodeAheadBatch   = 256      // records handed over at once
	decodeAheadBatches = 20       // batches decoded ahead at most (about 5,000 records)
	decodeAheadBytes   = 16 << 20 // values decoded ahead at most (one record beyond it)
)

// relSnap is what the reader knew of a record when it decoded it: the
// relations it names (the reader itself runs ahead, and a relation
// record further on would otherwise answer for an earlier change),
// whether its values may hold text that is not UTF-8, and what they
// hold in memory.
type relSnap struct {
	oid  uint32
	rel  *segment.Relation
	more map[uint32]*segment.Relation // a TRUNCATE's other relations
	// notUTF8: segment.Reader.NotUTF8 counted some of its values; when
	// false every text value is valid UTF-8, unchecked
	notUTF8 bool
	bytes   int // valueBytes of the record
}

func (s relSnap) Relation(oid uint32) *segment.Relation {
	if oid == s.oid && s.rel != nil {
		return s.rel
	}
	return s.more[oid]
}

type decoded struct {
	rec  *segment.Record
	rels relSnap
	err  error // io.EOF at the end
}

// ahead is a segment being decoded ahead: batches of records in order,
// the bytes of values they hold until replay is done with them, and a
// signal that replay freed some.
type ahead struct {
	ch    chan aheadBatch
	used  atomic.Int64
	freed chan struct{}
	spare chan []decoded // batches replay is done with, for the decoder to fill again
}

type aheadBatch struct {
	recs  []decoded
	bytes int64
}

// done gives a batch's bytes back once replay has applied or buffered
// its records (what replay buffers is bounded by netMaxBytes).
func (a *ahead) done(b aheadBatch) {
	a.used.Add(-b.bytes)
	select {
	case a.freed <- struct{}{}:
	default:
	}
	clear(b.recs) // replay keeps no reference into it
	select {
	case a.spare <- b.recs[:0]:
	default:
	}
}

// batch is an empty batch, one replay is done with when there is one.
func (a *ahead) batch() aheadBatch {
	select {
	case recs := <-a.spare:
		return aheadBatch{recs: recs}
	default:
		return aheadBatch{recs: make([]decoded, 0, decodeAheadBatch)}
	}
}

// decodeAhead decodes r on a goroutine into batches; stop ends it, and the
// channel closes once it has (so r may then be closed).
func decodeAhead(r *segment.Reader, stop <-chan struct{}) *ahead {
	a := &ahead{ch: make(chan aheadBatch, decodeAheadBatches), freed: make(chan struct{}, 1), spare: make(chan []decoded, decodeAheadBatches)}
	go func() {
		defer close(a.ch)
		batch := a.batch()
		send := func() bool {
			// Wait while the batches not yet applied hold too much
			// (one batch always goes, however large).
			for used := a.used.Load(); used > 0 && used+batch.bytes > decodeAheadBytes; used = a.used.Load() {
				select {
				case <-a.freed:
				case <-stop:
					return false
				}
			}
			a.used.Add(batch.bytes)
			select {
			case a.ch <- batch:
				batch = a.batch()
				return true
			case <-stop:
				return false
			}
		}
		for {
			notUTF8 := r.NotUTF8()
			rec, err := r.Next()
			if err != nil {
				batch.recs = append(batch.recs, decoded{err: err})
				send()
				return
			}
			d := decoded{rec: rec}
			d.rels.notUTF8 = r.NotUTF8() != notUTF8
			d.rels.bytes = valueBytes(rec)
			switch {
			case rec.RelOID != 0:
				d.rels.oid, d.rels.rel = rec.RelOID, r.Relation(rec.RelOID)
			case len(rec.RelOIDs) > 0:
				d.rels.more = map[uint32]*segment.Relation{}
				for _, oid := range rec.RelOIDs {
					d.rels.more[oid] = r.Relation(oid)
				}
			}
			batch.recs = append(batch.recs, d)
			batch.bytes += int64(d.rels.bytes)
			if (len(batch.recs) == decodeAheadBatch || batch.bytes >= decodeAheadBytes/decodeAheadBatches) && !send() {
				return
			}
		}
	}()
	return a
}

// segment applies one segment; it returns when the segment ends or the
// target is reached.
func (p *replayer) segment(ctx context.Context, r *segment.Reader) error {
	stop := make(chan struct{})
	a := decodeAhead(r, stop)
	defer func() {
		close(stop)
		for range a.ch {
		}
	}()
	for batch := range a.ch {
		for _, d := range batch.recs {
			if p.done {
				return nil
			}
			if d.err == io.EOF {
				return nil
			}
			if d.err != nil {
				return d.err
			}
			if err := p.record(ctx, d.rels, d.rec); err != nil {
				return err
			}
		}
		a.done(batch)
	}
	return nil
}
