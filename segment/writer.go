package segment

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TypeEnd is the trailer written by Close; a segment without it is
// truncated.
const TypeEnd = "end"

// TxInfo describes a whole transaction, known once it has committed.
type TxInfo struct {
	XID        uint32
	CommitLSN  LSN // start of the commit record
	EndLSN     LSN // end of the commit record
	CommitTime time.Time
	Changes    int // change records that follow
}

// Summary is what the metadata store records about a finished segment
// (DESIGN 2.2).
type Summary struct {
	Format         int
	PrevEndLSN     LSN
	FirstCommitLSN LSN
	LastCommitLSN  LSN
	EndLSN         LSN
	FirstCommitAt  time.Time
	LastCommitAt   time.Time
	TxCount        int64
	ChangeCount    int64
	RawBytes       int64 // uncompressed NDJSON
	StoredBytes    int64
	SHA256         string // of the stored (compressed) bytes
}

// Writer writes one segment to an io.Writer. It is not safe for
// concurrent use. Transactions go in whole: BeginTx, their changes, CommitTx.
type Writer struct {
	stored  *countingWriter
	zw      *zstd.Encoder
	raw     *countingWriter
	buf     *bufio.Writer
	line    []byte // reused by write
	sum     Summary
	written map[uint32]*Relation // relation schema last written, by OID
	inTx    bool
	tx      TxInfo
	txSeen  int
	err     error
}

type countingWriter struct {
	w io.Writer
	n int64
	h hash.Hash
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	return n, err
}

// NewWriter starts a segment on w with header h (Format is set here).
func NewWriter(w io.Writer, h Header, level zstd.EncoderLevel) (*Writer, error) {
	stored := &countingWriter{w: w, h: sha256.New()}
	zw, err := zstd.NewWriter(stored, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	raw := &countingWriter{w: zw}
	buf := bufio.NewWriterSize(raw, 256<<10)
	sw := &Writer{stored: stored, zw: zw, raw: raw, buf: buf, written: map[uint32]*Relation{}}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	h.Format = FormatVersion
	if h.CreatedAt.IsZero() {
		h.CreatedAt = time.Now()
	}
	h.CreatedAt = h.CreatedAt.UTC()
	sw.sum = Summary{Format: FormatVersion, PrevEndLSN: LSN(h.PrevEndLSN)}
	if err := enc.Encode(h); err != nil {
		return nil, err
	}
	return sw, nil
}

func (w *Writer) write(rec *Record) error {
	if w.err != nil {
		return w.err
	}
	line, err := AppendRecord(w.line[:0], rec)
	if err == nil {
		_, err = w.buf.Write(line)
	}
	if cap(line) > keepMax {
		line = nil
	}
	w.line, w.err = line, err
	return err
}

// BeginTx starts a transaction. Its commit must start at or after the end
// of the previous transaction (commit order, DESIGN 2.1).
func (w *Writer) BeginTx(tx TxInfo) error {
	if w.inTx {
		return fmt.Errorf("segment: BeginTx inside transaction %d", w.tx.XID)
	}
	prevEnd := w.sum.EndLSN
	if w.sum.TxCount == 0 {
		prevEnd = w.sum.PrevEndLSN
	}
	if tx.CommitLSN < prevEnd || tx.EndLSN <= tx.CommitLSN {
		return fmt.Errorf("segment: transaction %d commit %s..%s out of order after %s", tx.XID, tx.CommitLSN, tx.EndLSN, prevEnd)
	}
	w.inTx, w.tx, w.txSeen = true, tx, 0
	t := tx.CommitTime.UTC()
	return w.write(&Record{T: TypeBegin, XID: tx.XID, CommitLSN: TextLSN(tx.CommitLSN), EndLSN: TextLSN(tx.EndLSN), CommitTime: &t, Changes: tx.Changes})
}

// WriteChange writes one change of the open transaction. rel is the
// relation schema the change was decoded with (nil for truncate, message
// and ddl records, whose relations, if any, must have been written by
// WriteRelation); it is written first when this segment does not yet hold
// that exact schema. Ordinals are assigned here, from 1.
func (w *Writer) WriteChange(rec *Record, rels ...*Relation) error {
	if !w.inTx {
		return fmt.Errorf("segment: change outside a transaction")
	}
	for _, rel := range rels {
		if err := w.WriteRelation(rel); err != nil {
			return err
		}
	}
	w.txSeen++
	if w.txSeen > w.tx.Changes {
		return fmt.Errorf("segment: transaction %d announced %d changes, got more", w.tx.XID, w.tx.Changes)
	}
	rec.Ordinal = w.txSeen
	return w.write(rec)
}

// WriteRelation writes a relation's schema unless this segment already
// holds the same *Relation (the stream replaces the pointer when pgoutput
// sends a new Relation message).
func (w *Writer) WriteRelation(rel *Relation) error {
	if rel == nil || w.written[rel.OID] == rel {
		return nil
	}
	w.written[rel.OID] = rel
	return w.write(&Record{T: TypeRelation, Relation: rel})
}

// CommitTx closes the open transaction.
func (w *Writer) CommitTx() error {
	if !w.inTx {
		return fmt.Errorf("segment: CommitTx without BeginTx")
	}
	if w.txSeen != w.tx.Changes {
		return fmt.Errorf("segment: transaction %d announced %d changes, got %d", w.tx.XID, w.tx.Changes, w.txSeen)
	}
	if err := w.write(&Record{T: TypeCommit, XID: w.tx.XID, CommitLSN: TextLSN(w.tx.CommitLSN), EndLSN: TextLSN(w.tx.EndLSN), Changes: w.tx.Changes}); err != nil {
		return err
	}
	w.inTx = false
	s := &w.sum
	if s.TxCount == 0 {
		s.FirstCommitLSN, s.FirstCommitAt = w.tx.CommitLSN, w.tx.CommitTime.UTC()
	}
	s.LastCommitLSN, s.EndLSN, s.LastCommitAt = w.tx.CommitLSN, w.tx.EndLSN, w.tx.CommitTime.UTC()
	s.TxCount++
	s.ChangeCount += int64(w.tx.Changes)
	return nil
}

// TxCount is the number of whole transactions written so far.
func (w *Writer) TxCount() int64 { return w.sum.TxCount }

// RawBytes is the uncompressed size written so far (for rotation).
func (w *Writer) RawBytes() int64 { return w.raw.n + int64(w.buf.Buffered()) }

// Close writes the trailer, finishes compression and returns the summary.
// It does not close the underlying writer.
func (w *Writer) Close() (Summary, error) {
	if w.inTx {
		return Summary{}, fmt.Errorf("segment: Close inside transaction %d", w.tx.XID)
	}
	end := &Record{T: TypeEnd, Changes: int(w.sum.ChangeCount), EndLSN: TextLSN(w.sum.EndLSN), XID: 0}
	if err := w.write(end); err != nil {
		return Summary{}, err
	}
	if err := w.buf.Flush(); err != nil {
		return Summary{}, err
	}
	if err := w.zw.Close(); err != nil {
		return Summary{}, err
	}
	w.sum.RawBytes = w.raw.n
	w.sum.StoredBytes = w.stored.n
	w.sum.SHA256 = hex.EncodeToString(w.stored.h.Sum(nil))
	return w.sum, nil
}
