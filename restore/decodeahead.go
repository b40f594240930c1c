package restore

import (
	"context"
	"io"

	"github.com/btfu/btfu/segment"
)

// Replay decodes a segment ahead of applying it: decompressing and
// parsing records runs on its own goroutine while the target works on the
// statements already sent, a bounded number of records ahead.

const (
	decodeAheadBatch   = 256 // records handed over at once
	decodeAheadBatches = 80  // batches decoded ahead at most (about netMax records)
)

// relations answers which relation an oid names, as of one record.
type relations interface {
	Relation(oid uint32) *segment.Relation
}

// relSnap is the relations a record names, as the reader knew them when
// it decoded the record: the reader itself runs ahead, and a relation
// record further on would otherwise answer for an earlier change.
type relSnap struct {
	oid  uint32
	rel  *segment.Relation
	more map[uint32]*segment.Relation // a TRUNCATE's other relations
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

// decodeAhead decodes r on a goroutine into batches; stop ends it, and the
// channel closes once it has (so r may then be closed).
func decodeAhead(r *segment.Reader, stop <-chan struct{}) <-chan []decoded {
	ch := make(chan []decoded, decodeAheadBatches)
	go func() {
		defer close(ch)
		batch := make([]decoded, 0, decodeAheadBatch)
		send := func() bool {
			select {
			case ch <- batch:
				batch = make([]decoded, 0, decodeAheadBatch)
				return true
			case <-stop:
				return false
			}
		}
		for {
			rec, err := r.Next()
			if err != nil {
				batch = append(batch, decoded{err: err})
				send()
				return
			}
			d := decoded{rec: rec}
			switch {
			case rec.RelOID != 0:
				d.rels = relSnap{oid: rec.RelOID, rel: r.Relation(rec.RelOID)}
			case len(rec.RelOIDs) > 0:
				d.rels.more = map[uint32]*segment.Relation{}
				for _, oid := range rec.RelOIDs {
					d.rels.more[oid] = r.Relation(oid)
				}
			}
			batch = append(batch, d)
			if len(batch) == decodeAheadBatch && !send() {
				return
			}
		}
	}()
	return ch
}

// segment applies one segment; it returns when the segment ends or the
// target is reached.
func (p *replayer) segment(ctx context.Context, r *segment.Reader) error {
	stop := make(chan struct{})
	ch := decodeAhead(r, stop)
	defer func() {
		close(stop)
		for range ch {
		}
	}()
	for batch := range ch {
		for _, d := range batch {
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
	}
	return nil
}
