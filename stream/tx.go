package stream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

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

type spoolEntry struct {
	X   uint32         `json:"x"`
	R   []int          `json:"r,omitempty"` // indexes in Tx.rels
	Rec segment.Record `json:"c"`
}

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
		dec := json.NewDecoder(bufio.NewReaderSize(t.spool, 1<<20))
		for {
			var e spoolEntry
			if err := dec.Decode(&e); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("read spool of transaction %d: %w", t.Info.XID, err)
			}
			rels := make([]*segment.Relation, len(e.R))
			for i, idx := range e.R {
				rels[i] = t.rels[idx]
			}
			if err := write(e.X, rels, &e.Rec); err != nil {
				return err
			}
		}
	}
	for i := range t.mem {
		if err := write(t.mem[i].xid, t.mem[i].rels, &t.mem[i].rec); err != nil {
			return err
		}
	}
	return w.CommitTx()
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
	xid      uint32
	tx       *Tx
	counts   map[uint32]int // changes per (sub)transaction xid
	memBytes int
	limit    int
	dir      string
	spoolW   *bufio.Writer
	spoolE   *json.Encoder
	relIdx   map[*segment.Relation]int
	tables   []entry
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
	return b.spoolOne(xid, rels, rec)
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
	b.spoolE = json.NewEncoder(b.spoolW)
	b.relIdx = map[*segment.Relation]int{}
	mem := b.tx.mem
	b.tx.mem, b.memBytes = nil, 0
	for _, e := range mem {
		if err := b.spoolOne(e.xid, e.rels, e.rec); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) spoolOne(xid uint32, rels []*segment.Relation, rec segment.Record) error {
	var idx []int
	for _, rel := range rels {
		i, ok := b.relIdx[rel]
		if !ok {
			i = len(b.tx.rels)
			b.tx.rels = append(b.tx.rels, rel)
			b.relIdx[rel] = i
		}
		idx = append(idx, i)
	}
	if err := b.spoolE.Encode(spoolEntry{X: xid, R: idx, Rec: rec}); err != nil {
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
