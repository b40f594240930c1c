package segment

import (
	"bufio"
	"bytes"
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
	br     *bufio.Reader
	long   []byte        // a line longer than br's buffer, pieced together
	dec    *json.Decoder // from the first line that is not one JSON value on (see next)
	Header Header
	rels   map[uint32]*Relation
	done   bool
	// records and values are handed out from slabs (many per allocation)
	recs      []Record
	slabs     slabs
	unmarshal func(*Record, []byte) error
}

// NewReader reads the header of the segment in r.
func NewReader(r io.Reader) (*Reader, error) {
	zr, err := zstd.NewReader(bufio.NewReaderSize(r, 256<<10), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	sr := &Reader{zr: zr, br: bufio.NewReaderSize(zr, 256<<10), rels: map[uint32]*Relation{}}
	sr.unmarshal = func(rec *Record, line []byte) error { return rec.unmarshalLine(line, &sr.slabs) }
	if err := next(sr, &sr.Header, func(h *Header, line []byte) error { return json.Unmarshal(line, h) }); err != nil {
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
	if len(r.recs) == 0 {
		r.recs = make([]Record, 128)
	}
	rec := &r.recs[0]
	r.recs = r.recs[1:]
	err := next(r, rec, r.unmarshal)
	if r.dec != nil {
		r.slabs.notUTF8++ // decoded by encoding/json (see next)
	}
	if err != nil {
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
	return rec, nil
}

// keepMax: a line buffer grown beyond this for a huge record is let go
// after it, not kept for the rest of the segment.
const keepMax = 4 << 20

// next reads the next value into the zero *v.
//
// A segment is NDJSON: one record per line (encoding/json, and AppendRecord
// after it, escape newlines inside strings, so a line is a whole record
// and a record a whole line). Reading line by line lets UnmarshalLine decode
// without reflection. This reader used to be a json.Decoder, which also
// takes a value split over lines, several values on a line, and blank
// lines. Nothing btfu has written does that, but such a segment still reads
// as it did: from the first line that is not one JSON value, the rest of
// the segment goes to a json.Decoder (as before, errors included).
func next[T any](r *Reader, v *T, unmarshal func(*T, []byte) error) error {
	if r.dec == nil {
		line, err := r.readLine()
		if (err == nil || err == io.EOF) && len(line) > 0 && unmarshal(v, line) == nil {
			return nil
		}
		var zero T
		*v = zero
		rest := io.Reader(r.br)
		if err != nil && err != io.EOF {
			rest = errReader{err}
		}
		r.dec = json.NewDecoder(io.MultiReader(bytes.NewReader(bytes.Clone(line)), rest))
		r.long = nil
	}
	return r.dec.Decode(v)
}

// readLine returns the next line, with its newline unless it is the last
// and has none; io.EOF with an empty line at the end.
func (r *Reader) readLine() ([]byte, error) {
	if cap(r.long) > keepMax {
		r.long = nil
	}
	r.long = r.long[:0]
	for {
		b, err := r.br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			if len(r.long) == 0 {
				return b, err
			}
			r.long = append(r.long, b...)
			return r.long, err
		}
		r.long = append(r.long, b...)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Relation returns the schema of a relation as last described in this
// segment, or nil.
func (r *Reader) Relation(oid uint32) *Relation { return r.rels[oid] }

// NotUTF8 counts the values read so far that may not be valid UTF-8:
// those given in base64 (the source's text was not UTF-8) and any on a
// line decoded by encoding/json. Every other text value is valid UTF-8,
// so a record read without it growing needs no check.
func (r *Reader) NotUTF8() int64 { return r.slabs.notUTF8 }

// Close releases the decompressor.
func (r *Reader) Close() { r.zr.Close() }
