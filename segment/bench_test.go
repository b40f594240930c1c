package segment

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// A five-column table, as in issue 14's 1M-row INSERT.
var benchRel = &Relation{OID: 16400, Schema: "public", Name: "accounts", ReplicaIdentity: "d", Columns: []Column{
	{Name: "id", TypeOID: 20, Type: "bigint", TypMod: -1, Key: true},
	{Name: "name", TypeOID: 25, Type: "text", TypMod: -1},
	{Name: "email", TypeOID: 1043, Type: "character varying(200)", TypMod: 204},
	{Name: "balance", TypeOID: 1700, Type: "numeric(12,2)", TypMod: 786438},
	{Name: "created_at", TypeOID: 1184, Type: "timestamp with time zone", TypMod: -1},
}}

// benchRecords returns n insert or update records of benchRel.
func benchRecords(kind string, n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		id := strconv.Itoa(1000000 + i)
		row := []Value{
			TextValue(id),
			TextValue("customer " + id),
			TextValue("c" + id + "@example.com"),
			TextValue(strconv.Itoa(i%100000) + "." + strconv.Itoa(10+i%90)),
			TextValue("2026-11-23 14:05:01.123456+00"),
		}
		switch kind {
		case "insert":
			recs[i] = Record{T: TypeInsert, RelOID: benchRel.OID, New: row}
		case "update":
			row[1] = Value{Kind: Unchanged}
			recs[i] = Record{T: TypeUpdate, RelOID: benchRel.OID, OldKind: "K", Old: []Value{TextValue(id), {Kind: Null}, {Kind: Null}, {Kind: Null}, {Kind: Null}}, New: row}
		}
	}
	return recs
}

// benchSegment writes one transaction of n records of the kind to w.
func benchSegment(tb testing.TB, w io.Writer, kind string, n int, each func()) {
	recs := benchRecords(kind, 1024)
	sw, err := NewWriter(w, Header{Source: "bench", ChainID: 1}, zstd.SpeedDefault)
	if err != nil {
		tb.Fatal(err)
	}
	if err := sw.BeginTx(TxInfo{XID: 1, CommitLSN: 0x1000, EndLSN: 0x2000, CommitTime: time.Date(2026, 11, 23, 14, 5, 1, 0, time.UTC), Changes: n}); err != nil {
		tb.Fatal(err)
	}
	if each != nil {
		each()
	}
	for i := 0; i < n; i++ {
		rec := recs[i%len(recs)]
		if err := sw.WriteChange(&rec, benchRel); err != nil {
			tb.Fatal(err)
		}
	}
	if err := sw.CommitTx(); err != nil {
		tb.Fatal(err)
	}
	if _, err := sw.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkWriteRecords: one op is one change record through
// Writer.WriteChange (encoding and zstd at capture's level).
func BenchmarkWriteRecords(b *testing.B) {
	for _, kind := range []string{"insert", "update"} {
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			benchSegment(b, io.Discard, kind, b.N, b.ResetTimer)
		})
	}
}

// BenchmarkReadRecords: one op is one change record through Reader.Next
// (zstd decompression and decoding).
func BenchmarkReadRecords(b *testing.B) {
	for _, kind := range []string{"insert", "update"} {
		b.Run(kind, func(b *testing.B) {
			var buf bytes.Buffer
			benchSegment(b, &buf, kind, b.N, nil)
			b.ReportAllocs()
			b.ResetTimer()
			r, err := NewReader(&buf)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			n := 0
			for {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if rec.RelOID != 0 {
					n++
				}
			}
			if n != b.N {
				b.Fatalf("read %d changes, want %d", n, b.N)
			}
		})
	}
}

// BenchmarkEncodeRecord: the codec alone, encoding/json against
// AppendRecord, one op per record.
func BenchmarkEncodeRecord(b *testing.B) {
	for _, kind := range []string{"insert", "update"} {
		recs := benchRecords(kind, 1024)
		b.Run(kind+"/encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			enc := json.NewEncoder(io.Discard)
			enc.SetEscapeHTML(false)
			for i := 0; b.Loop(); i++ {
				if err := enc.Encode(&recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/AppendRecord", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			var err error
			for i := 0; b.Loop(); i++ {
				if buf, err = AppendRecord(buf[:0], &recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeRecord: the codec alone, json.Unmarshal against
// UnmarshalLine, one op per record.
func BenchmarkDecodeRecord(b *testing.B) {
	for _, kind := range []string{"insert", "update"} {
		var lines [][]byte
		for i, rec := range benchRecords(kind, 1024) {
			rec.Ordinal = i + 1
			line, err := AppendRecord(nil, &rec)
			if err != nil {
				b.Fatal(err)
			}
			lines = append(lines, line)
		}
		b.Run(kind+"/json_Unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var rec Record
				if err := json.Unmarshal(lines[i%len(lines)], &rec); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/UnmarshalLine", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var rec Record
				if err := rec.UnmarshalLine(lines[i%len(lines)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
