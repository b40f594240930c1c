package segment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// readResult is everything a reader makes of a segment.
type readResult struct {
	header Header
	recs   []Record
	err    string // what ended it: "EOF", or the error
}

// oldRead reads a segment as Reader did before it read line by line: a
// json.Decoder on the decompressed stream.
func oldRead(data []byte) readResult {
	var res readResult
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		panic(err)
	}
	defer zr.Close()
	dec := json.NewDecoder(zr)
	if err := dec.Decode(&res.header); err != nil {
		return readResult{err: fmt.Errorf("%w: header: %v", ErrCorrupt, err).Error()}
	}
	if res.header.Format == 0 || res.header.Format > FormatVersion {
		return readResult{err: "format"}
	}
	for {
		var rec Record
		if err := dec.Decode(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				res.err = fmt.Errorf("%w: truncated (no end record)", ErrCorrupt).Error()
			} else {
				res.err = fmt.Errorf("%w: %v", ErrCorrupt, err).Error()
			}
			return res
		}
		switch {
		case rec.T == TypeEnd:
			res.err = "EOF"
			return res
		case rec.T == TypeRelation && rec.Relation == nil, rec.T == "":
			res.err = "bad record"
			return res
		}
		res.recs = append(res.recs, rec)
	}
}

func newRead(data []byte) readResult {
	var res readResult
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		res.err = err.Error()
		if strings.Contains(res.err, "not a btfu segment") || strings.Contains(res.err, "upgrade btfu") {
			res.err = "format"
		}
		return res
	}
	defer r.Close()
	res.header = r.Header
	for {
		notUTF8 := r.NotUTF8()
		rec, err := r.Next()
		if err == nil && r.NotUTF8() == notUTF8 {
			// Not counted: every text value must be valid UTF-8.
			for _, v := range append(append([]Value(nil), rec.Old...), rec.New...) {
				if v.Kind == Text && !utf8.ValidString(v.Text) {
					res.err = fmt.Sprintf("value %q is not UTF-8, and NotUTF8 did not count it", v.Text)
					return res
				}
			}
		}
		switch {
		case err == io.EOF:
			res.err = "EOF"
			return res
		case err != nil:
			res.err = err.Error()
			if strings.Contains(res.err, "relation record without") || strings.Contains(res.err, "record without a type") {
				res.err = "bad record"
			}
			return res
		}
		res.recs = append(res.recs, *rec)
	}
}

var testEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

func compress(ndjson []byte) []byte { return testEncoder.EncodeAll(ndjson, nil) }

func decompress(t testing.TB, data []byte) []byte {
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkSameRead(t *testing.T, ndjson []byte) readResult {
	t.Helper()
	data := compress(ndjson)
	want, got := oldRead(data), newRead(data)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("segment %.300q:\n got %d records, %s\nwant %d records, %s", ndjson, len(got.recs), got.err, len(want.recs), want.err)
	}
	return got
}

// sampleSegment writes a segment of generated transactions with the Writer
// and returns it decompressed, with the records it was given.
func sampleSegment(t testing.TB, rng *rand.Rand, txs int) ([]byte, []*Record) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Source: "s", ChainID: 3, PrevEndLSN: 0x100, CreatedAt: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*Record
	lsn := LSN(0x100)
	for x := range txs {
		n := rng.IntN(5)
		if err := w.BeginTx(TxInfo{XID: uint32(700 + x), CommitLSN: lsn, EndLSN: lsn + 0x40, CommitTime: time.Unix(1795000000+int64(x), 0), Changes: n}); err != nil {
			t.Fatal(err)
		}
		lsn += 0x40
		for range n {
			var r *Record
			for r == nil || r.T == TypeBegin || r.T == TypeCommit || r.T == TypeEnd || r.T == TypeRelation || r.T == "" || invalidKind(r) {
				r = randRecord(rng)
			}
			var rels []*Relation
			if r.T == TypeInsert || r.T == TypeUpdate || r.T == TypeDelete {
				rel := randRelation(rng)
				rel.OID = r.RelOID
				rels = append(rels, rel)
			}
			if err := w.WriteChange(r, rels...); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
		if err := w.CommitTx(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return decompress(t, buf.Bytes()), recs
}

func invalidKind(r *Record) bool {
	for _, v := range append(append([]Value(nil), r.Old...), r.New...) {
		if v.Kind != 0 && v.Kind != Null && v.Kind != Text && v.Kind != Unchanged {
			return true
		}
	}
	return false
}

// The writer's lines are encoding/json's: the header as before, every
// record as json.Encoder wrote it.
func TestWriterWritesWhatEncodingJSONWrote(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 4))
	ndjson, recs := sampleSegment(t, rng, 300)
	lines := strings.SplitAfter(string(ndjson), "\n")
	if lines[len(lines)-1] != "" {
		t.Fatalf("segment does not end with a newline")
	}
	lines = lines[:len(lines)-1]
	changes := 0
	for _, line := range lines[1:] {
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.T == TypeBegin || rec.T == TypeCommit || rec.T == TypeEnd || rec.T == TypeRelation {
			continue
		}
		want, err := jsonLine(t, recs[changes])
		if err != nil || line != string(want) {
			t.Fatalf("change %d:\n got %q\nwant %q (%v)", changes, line, want, err)
		}
		changes++
	}
	if changes != len(recs) {
		t.Fatalf("%d changes in the segment, %d written", changes, len(recs))
	}
	res := checkSameRead(t, ndjson)
	if res.err != "EOF" || len(res.recs) != len(lines)-2 {
		t.Fatalf("read %d records, %s", len(res.recs), res.err)
	}
}

// Whatever the old json.Decoder reader made of a segment, the line reader
// makes of it too: values split over lines, several on a line, blank lines,
// CRLF, garbage, truncation, type errors, huge records.
func TestReaderReadsAsJSONDecoderDid(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 5))
	base, _ := sampleSegment(t, rng, 40)
	checkSameRead(t, base)
	huge := strings.Repeat("v\u00e9\n", 60<<10) // a 300 KiB line, more than the reader's buffer
	withHuge := bytes.Replace(base, []byte("\n"), []byte("\n"+`{"t":"i","o":1,"r":1,"new":[`+string(mustJSON(huge))+`,"x"]}`+"\n"), 3)
	for _, seg := range [][]byte{withHuge, bytes.ReplaceAll(withHuge, []byte("\n"), []byte("\r\n")), bytes.ReplaceAll(base, []byte("\n"), nil)} {
		checkSameRead(t, seg)
	}
	mutations := []func(b []byte, i int) []byte{
		func(b []byte, i int) []byte { return insert(b, i, "\n") },
		func(b []byte, i int) []byte { return insert(b, i, " ") },
		func(b []byte, i int) []byte { return insert(b, i, "\n\n  \t\n") },
		func(b []byte, i int) []byte { return insert(b, i, "garbage") },
		func(b []byte, i int) []byte { return insert(b, i, `{"t":"i","xid":-1}`) },
		func(b []byte, i int) []byte { return insert(b, i, `{"t":"i"}{"t":"u"}`+"\n") },
		func(b []byte, i int) []byte { return b[:i] },
		func(b []byte, i int) []byte { return append(append([]byte(nil), b[:i]...), b[i+1:]...) },
		func(b []byte, i int) []byte {
			c := append([]byte(nil), b...)
			c[i] ^= byte(1 << rng.IntN(8))
			return c
		},
		func(b []byte, i int) []byte { // join two lines
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return b
			}
			return append(append([]byte(nil), b[:i+j]...), b[i+j+1:]...)
		},
		func(b []byte, i int) []byte { // swap the remaining lines' order
			lines := bytes.SplitAfter(b[i:], []byte("\n"))
			rng.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
			return append(append([]byte(nil), b[:i]...), bytes.Join(lines, nil)...)
		},
	}
	for range 1200 {
		seg := base
		if rng.IntN(4) == 0 {
			seg = withHuge
		}
		for range 1 + rng.IntN(2) {
			seg = mutations[rng.IntN(len(mutations))](seg, rng.IntN(len(seg)))
		}
		checkSameRead(t, seg)
	}
}

func insert(b []byte, i int, s string) []byte {
	return append(append(append([]byte(nil), b[:i]...), s...), b[i:]...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzReader(f *testing.F) {
	rng := rand.New(rand.NewPCG(14, 6))
	seg, _ := sampleSegment(f, rng, 5)
	f.Add(seg)
	f.Add([]byte(`{"btfu_segment":1}` + "\n" + `{"t":"i"}` + "\n" + `{"t":"end"}`))
	f.Add([]byte(`{"btfu_segment":1}{"t":"i"}` + "\n\n" + `{"t":` + "\n" + `"end"}`))
	for _, s := range []string{"", "\n", `{"btfu_segment":1}`, "{\"btfu_segment\":1}\n{\"t\":\"i\"}", "{\"btfu_segment\":1}\n{\"t\":\"i\"}  ", "{\"btfu_segment\":1}\n{\"t\":\"end\"}\n{garbage"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ndjson []byte) {
		checkSameRead(t, ndjson)
	})
}

// A record far larger than the reader's buffer, with short ones around it.
func TestHugeRecordRoundTrip(t *testing.T) {
	huge := strings.Repeat("0123456789abcdef\"\n", 1<<20/18*20) // ~20 MiB, escaped
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Source: "s"}, zstd.SpeedFastest)
	w.BeginTx(TxInfo{XID: 1, CommitLSN: 10, EndLSN: 20, CommitTime: time.Now(), Changes: 3})
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("1")}}, orders)
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("2"), TextValue(huge), TextValue(huge + "\xff")}}, orders)
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("3")}}, orders)
	if err := w.CommitTx(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if cap(w.line) > keepMax {
		t.Errorf("the writer kept a %d-byte buffer", cap(w.line))
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.T == TypeInsert {
			got = append(got, rec.New[0].Text)
			if rec.New[0].Text == "2" && (rec.New[1].Text != huge || rec.New[2].Text != huge+"\xff") {
				t.Fatal("the huge values came back changed")
			}
		}
	}
	if cap(r.long) > keepMax {
		t.Errorf("the reader kept a %d-byte buffer after the huge record", cap(r.long))
	}
	if strings.Join(got, ",") != "1,2,3" || r.dec != nil {
		t.Fatalf("inserts %v, json.Decoder used: %v", got, r.dec != nil)
	}
}

// The writer encodes without allocating, and the reader decodes an
// insert or update with a few allocations (the record, one string for its
// text, its old and new values), not encoding/json's two or three dozen.
func TestCodecAllocations(t *testing.T) {
	for _, kind := range []string{"insert", "update"} {
		recs := benchRecords(kind, 16)
		w, _ := NewWriter(io.Discard, Header{Source: "s"}, zstd.SpeedFastest)
		w.BeginTx(TxInfo{XID: 1, CommitLSN: 10, EndLSN: 20, CommitTime: time.Now(), Changes: 1 << 20})
		i := 0
		if n := testing.AllocsPerRun(2000, func() {
			rec := recs[i%len(recs)]
			i++
			if err := w.WriteChange(&rec, benchRel); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: WriteChange allocates %v times per record", kind, n)
		}

		var buf bytes.Buffer
		benchSegment(t, &buf, kind, 5000, nil)
		r, err := NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		r.Next() // begin, relation
		r.Next()
		if n := testing.AllocsPerRun(4000, func() {
			if rec, err := r.Next(); err != nil || rec.RelOID == 0 {
				t.Fatal(rec, err)
			}
		}); n > 4 {
			t.Errorf("%s: Next allocates %v times per record", kind, n)
		}
		r.Close()
	}
}
