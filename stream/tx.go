package stream

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/btfu/btfu/segment"
)

// Tx is a committed transaction, whole, ready for a segment. Small
// transactions live in memory; large ones were spooled to a file as they
// arrived, so memory stays bounded whatever the transaction size (DESIGN
// 2.5).
type Tx struct {
	Info segment.TxInfo
	// TableEvents are the transaction's btfu.table messages (a table
	// joining or leaving the publication in this transaction), outside
	// aborted subtransactions.
	TableEvents []segment.Record

	mem     []entry
	spool   *os.File
	rels    []*segment.Relation // relations referenced by spooled entries
	aborted map[uint32]bool     // aborted subtransactions (streamed transactions)
}

type entry struct {
	xid  uint32
	rels []*segment.Relation // schemas the change needs
	rec  segment.Record
}

// The spool is private to one transaction of one process. Each change is
// one entry: uvarint xid, uvarint number of relations, a uvarint index in
// Tx.rels for each, uvarint length of the record, then the record as
// segment.AppendRecord writes it (UnmarshalLine reads it back without
// reflection).

// maxSpoolRecord bounds a spooled record's length, so that a damaged spool
// fails instead of asking for an absurd allocation. PostgreSQL values are
// at most 1 GB each; this allows a row of many of them.
const maxSpoolRecord = 1 << 40

// keepMax: a buffer grown beyond this for a huge record is let go after it.
const keepMax = 4 << 20

// WriteTo writes the transaction into a segment: begin, every change not
// in an aborted subtransaction, commit.
func (t *Tx) WriteTo(w *segment.Writer) error {
	if err := w.BeginTx(t.Info); err != nil {
		return err
	}
	write := func(xid uint32, rels []*segment.Relation, rec *segment.Record) error {
		if t.aborted[xid] {
			return nil
		}
		return w.WriteChange(rec, rels...)
	}
	if t.spool != nil {
		if _, err := t.spool.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("rewind spool: %w", err)
		}
		if err := t.readSpool(bufio.NewReaderSize(t.spool, 1<<20), write); err != nil {
			return err
		}
	}
	for i := range t.mem {
		if err := write(t.mem[i].xid, t.mem[i].rels, &t.mem[i].rec); err != nil {
			return err
		}
	}
	return w.CommitTx()
}

// readSpool hands every spooled change to write, in order. The record and
// the buffers are reused from one change to the next (the segment writer
// keeps neither).
func (t *Tx) readSpool(br *bufio.Reader, write func(xid uint32, rels []*segment.Relation, rec *segment.Record) error) error {
	var (
		rec  segment.Record
		rels []*segment.Relation
		line []byte
	)
	bad := func(err error) error { return fmt.Errorf("read spool of transaction %d: %w", t.Info.XID, err) }
	for {
		xid, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return bad(err)
		}
		if xid > 1<<32-1 {
			return bad(fmt.Errorf("xid %d", xid))
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return bad(noEOF(err))
		}
		rels = rels[:0]
		for range n {
			i, err := binary.ReadUvarint(br)
			if err != nil {
				return bad(noEOF(err))
			}
			if i >= uint64(len(t.rels)) {
				return bad(fmt.Errorf("relation %d of %d", i, len(t.rels)))
			}
			rels = append(rels, t.rels[i])
		}
		size, err := binary.ReadUvarint(br)
		if err != nil {
			return bad(noEOF(err))
		}
		if size > maxSpoolRecord || size > math.MaxInt {
			return bad(fmt.Errorf("a record of %d bytes", size))
		}
		if cap(line) > keepMax {
			line = nil
		}
		line = slices.Grow(line[:0], int(size))[:size]
		if _, err := io.ReadFull(br, line); err != nil {
			return bad(noEOF(err))
		}
		if err := rec.UnmarshalLine(line); err != nil {
			return bad(err)
		}
		if err := write(uint32(xid), rels, &rec); err != nil {
			return err
		}
	}
}

// noEOF: the spool ending inside an entry is unexpected.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Release frees the transaction's spool file.
func (t *Tx) Release() {
	if t.spool != nil {
		name := t.spool.Name()
		t.spool.Close()
		os.Remove(name)
		t.spool = nil
	}
	t.mem = nil
}

// builder accumulates one transaction's changes: in memory up to a limit,
// then in a spool file.
type builder struct {
	xid       uint32
	tx        *Tx
	counts    map[uint32]int // changes per (sub)transaction xid
	memBytes  int
	limit     int
	dir       string
	spoolW    *bufio.Writer
	spoolHead []byte // an entry's head and record, being spooled (reused)
	spoolRec  []byte
	relIdx    map[*segment.Relation]int
	tables    []entry
}

func newBuilder(xid uint32, dir string, limit int) *builder {
	return &builder{xid: xid, tx: &Tx{aborted: map[uint32]bool{}}, counts: map[uint32]int{}, limit: limit, dir: dir}
}

func (b *builder) add(xid uint32, rels []*segment.Relation, rec segment.Record) error {
	b.counts[xid]++
	if rec.T == segment.TypeMessage && rec.Prefix == segment.TableMessagePrefix {
		b.tables = append(b.tables, entry{xid: xid, rec: rec})
	}
	if b.spoolW == nil && b.memBytes < b.limit {
		b.tx.mem = append(b.tx.mem, entry{xid: xid, rels: rels, rec: rec})
		b.memBytes += recordSize(&rec)
		return nil
	}
	if b.spoolW == nil {
		if err := b.startSpool(); err != nil {
			return err
		}
	}
	return b.spoolOne(xid, rels, &rec)
}

// startSpool moves what is in memory to a new spool file; everything after
// goes there too, so order is kept.
func (b *builder) startSpool() error {
	f, err := os.CreateTemp(b.dir, fmt.Sprintf("tx-%d-*.spool", b.xid))
	if err != nil {
		return fmt.Errorf("spool transaction %d: %w", b.xid, err)
	}
	b.tx.spool = f
	b.spoolW = bufio.NewWriterSize(f, 1<<20)
	b.relIdx = map[*segment.Relation]int{}
	mem := b.tx.mem
	b.tx.mem, b.memBytes = nil, 0
	for i := range mem {
		if err := b.spoolOne(mem[i].xid, mem[i].rels, &mem[i].rec); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) spoolOne(xid uint32, rels []*segment.Relation, rec *segment.Record) error {
	line, err := segment.AppendRecord(b.spoolRec[:0], rec)
	if err != nil {
		return fmt.Errorf("spool transaction %d: %w", b.xid, err)
	}
	head := binary.AppendUvarint(b.spoolHead[:0], uint64(xid))
	head = binary.AppendUvarint(head, uint64(len(rels)))
	for _, rel := range rels {
		i, ok := b.relIdx[rel]
		if !ok {
			i = len(b.tx.rels)
			b.tx.rels = append(b.tx.rels, rel)
			b.relIdx[rel] = i
		}
		head = binary.AppendUvarint(head, uint64(i))
	}
	head = binary.AppendUvarint(head, uint64(len(line)))
	_, err = b.spoolW.Write(head)
	if err == nil {
		_, err = b.spoolW.Write(line)
	}
	if cap(line) > keepMax {
		line = nil
	}
	b.spoolHead, b.spoolRec = head, line
	if err != nil {
		return fmt.Errorf("spool transaction %d: %w", b.xid, err)
	}
	return nil
}

// abortSub drops a subtransaction's changes (streamed transactions only:
// for others the server already left them out).
func (b *builder) abortSub(subxid uint32) { b.tx.aborted[subxid] = true }

// finish completes the transaction with its commit information.
func (b *builder) finish(info segment.TxInfo) (*Tx, error) {
	if b.spoolW != nil {
		if err := b.spoolW.Flush(); err != nil {
			b.tx.Release()
			return nil, fmt.Errorf("spool transaction %d: %w", b.xid, err)
		}
	}
	n := 0
	for xid, c := range b.counts {
		if !b.tx.aborted[xid] {
			n += c
		}
	}
	info.Changes = n
	b.tx.Info = info
	for _, e := range b.tables {
		if !b.tx.aborted[e.xid] {
			b.tx.TableEvents = append(b.tx.TableEvents, e.rec)
		}
	}
	return b.tx, nil
}

func (b *builder) discard() { b.tx.Release() }

func recordSize(r *segment.Record) int {
	n := 64
	for _, v := range r.New {
		n += len(v.Text) + 8
	}
	for _, v := range r.Old {
		n += len(v.Text) + 8
	}
	return n + len(r.Content)
}
