package segment

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Reader reads a segment record by record; memory stays bounded by the
// largest single record, whatever the segment or transaction size.
type Reader struct {
	zr     *zstd.Decoder
	dec    *json.Decoder
	Header Header
	rels   map[uint32]*Relation
	done   bool
}

// NewReader reads the header of the segment in r.
func NewReader(r io.Reader) (*Reader, error) {
	zr, err := zstd.NewReader(bufio.NewReaderSize(r, 256<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	sr := &Reader{zr: zr, dec: json.NewDecoder(zr), rels: map[uint32]*Relation{}}
	if err := sr.dec.Decode(&sr.Header); err != nil {
		zr.Close()
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	switch {
	case sr.Header.Format == 0:
		zr.Close()
		return nil, fmt.Errorf("%w: not a btfu segment (no format version in the header)", ErrCorrupt)
	case sr.Header.Format > FormatVersion:
		zr.Close()
		return nil, fmt.Errorf("segment format %d is newer than this btfu reads (%d); upgrade btfu", sr.Header.Format, FormatVersion)
	}
	return sr, nil
}

// Next returns the next record, applying relation records so Relation
// answers for the changes that follow. At the trailer it returns io.EOF; a
// segment that ends without its trailer is ErrCorrupt (truncated).
func (r *Reader) Next() (*Record, error) {
	if r.done {
		return nil, io.EOF
	}
	var rec Record
	if err := r.dec.Decode(&rec); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: truncated (no end record)", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch rec.T {
	case TypeEnd:
		r.done = true
		return nil, io.EOF
	case TypeRelation:
		if rec.Relation == nil {
			return nil, fmt.Errorf("%w: relation record without a relation", ErrCorrupt)
		}
		r.rels[rec.Relation.OID] = rec.Relation
	case "":
		return nil, fmt.Errorf("%w: record without a type", ErrCorrupt)
	}
	return &rec, nil
}

// Relation returns the schema of a relation as last described in this
// segment, or nil.
func (r *Reader) Relation(oid uint32) *Relation { return r.rels[oid] }

// Close releases the decompressor.
func (r *Reader) Close() { r.zr.Close() }
