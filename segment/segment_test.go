package segment

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

var orders = &Relation{OID: 16385, Schema: "public", Name: "orders", ReplicaIdentity: "d", Columns: []Column{
	{Name: "id", TypeOID: 20, Type: "bigint", TypMod: -1, Key: true},
	{Name: "note", TypeOID: 25, Type: "text", TypMod: -1},
	{Name: "blob", TypeOID: 25, Type: "text", TypMod: -1},
}}

func writeSample(t *testing.T) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Source: "shop", ChainID: 7, PrevEndLSN: 0x1000}, zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 14, 5, 1, 123456000, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.BeginTx(TxInfo{XID: 900, CommitLSN: 0x1000, EndLSN: 0x1050, CommitTime: t0, Changes: 3}))
	must(w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("1"), TextValue(""), {Kind: Null}}}, orders))
	must(w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("2"), TextValue("null"), TextValue("\xff\xfe not utf8")}}, orders))
	must(w.WriteChange(&Record{T: TypeUpdate, RelOID: orders.OID, New: []Value{TextValue("2"), TextValue("x"), {Kind: Unchanged}}}, orders))
	must(w.CommitTx())
	must(w.BeginTx(TxInfo{XID: 901, CommitLSN: 0x1050, EndLSN: 0x10a0, CommitTime: t0.Add(time.Second), Changes: 2}))
	must(w.WriteChange(&Record{T: TypeTruncate, RelOIDs: []uint32{orders.OID}, Cascade: true, RestartIdentity: true}))
	must(w.WriteChange(&Record{T: TypeMessage, Prefix: "btfu.ddl", Content: `{"tag":"ALTER TABLE"}`}))
	must(w.CommitTx())
	sum, err := w.Close()
	must(err)
	return buf.Bytes(), sum
}

func TestRoundTrip(t *testing.T) {
	data, sum := writeSample(t)
	h := sha256.Sum256(data)
	if sum.SHA256 != hex.EncodeToString(h[:]) || sum.StoredBytes != int64(len(data)) {
		t.Fatalf("summary checksum/size do not match the bytes: %+v", sum)
	}
	if sum.TxCount != 2 || sum.ChangeCount != 5 || sum.FirstCommitLSN != 0x1000 || sum.LastCommitLSN != 0x1050 || sum.EndLSN != 0x10a0 || sum.PrevEndLSN != 0x1000 {
		t.Fatalf("summary: %+v", sum)
	}
	if !sum.LastCommitAt.Equal(sum.FirstCommitAt.Add(time.Second)) || sum.RawBytes <= 0 {
		t.Fatalf("summary times/raw: %+v", sum)
	}
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Header.Source != "shop" || r.Header.ChainID != 7 || LSN(r.Header.PrevEndLSN) != 0x1000 || r.Header.Format != FormatVersion {
		t.Fatalf("header %+v", r.Header)
	}
	var types []string
	var recs []*Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, rec.T)
		recs = append(recs, rec)
	}
	if got := strings.Join(types, ","); got != "begin,rel,i,i,u,commit,begin,trunc,msg,commit" {
		t.Fatalf("records: %s", got)
	}
	ins1, ins2, upd := recs[2], recs[3], recs[4]
	if ins1.Ordinal != 1 || ins2.Ordinal != 2 || upd.Ordinal != 3 || recs[7].Ordinal != 1 {
		t.Fatalf("ordinals: %d %d %d %d", ins1.Ordinal, ins2.Ordinal, upd.Ordinal, recs[7].Ordinal)
	}
	if ins1.New[1] != TextValue("") || ins1.New[2].Kind != Null {
		t.Fatalf("empty string vs NULL lost: %+v", ins1.New)
	}
	if ins2.New[1] != TextValue("null") || ins2.New[2] != TextValue("\xff\xfe not utf8") {
		t.Fatalf("text 'null' or non-UTF-8 bytes lost: %+v", ins2.New)
	}
	if upd.New[2].Kind != Unchanged {
		t.Fatalf("unchanged TOAST lost: %+v", upd.New)
	}
	if recs[0].LSN() != 0x1000 || recs[0].End() != 0x1050 || recs[0].XID != 900 || recs[0].Changes != 3 || !recs[0].CommitTime.Equal(time.Date(2026, 11, 23, 14, 5, 1, 123456000, time.UTC)) {
		t.Fatalf("begin: %+v", recs[0])
	}
	tr := recs[7]
	if len(tr.RelOIDs) != 1 || !tr.Cascade || !tr.RestartIdentity {
		t.Fatalf("truncate: %+v", tr)
	}
	if r.Relation(orders.OID).Columns[0].Name != "id" || !r.Relation(orders.OID).Columns[0].Key {
		t.Fatalf("relation: %+v", r.Relation(orders.OID))
	}
}

func TestRelationRewrittenWhenItChanges(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Header{Source: "s"}, zstd.SpeedFastest)
	w.BeginTx(TxInfo{XID: 1, CommitLSN: 10, EndLSN: 20, CommitTime: time.Now(), Changes: 3})
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("1")}}, orders)
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("2")}}, orders)
	changed := *orders
	changed.Columns = append(append([]Column(nil), orders.Columns...), Column{Name: "extra", TypeOID: 23, Type: "integer", TypMod: -1})
	w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("3")}}, &changed)
	w.CommitTx()
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := NewReader(&buf)
	n := 0
	for {
		rec, err := r.Next()
		if err != nil {
			break
		}
		if rec.T == TypeRelation {
			n++
		}
	}
	if n != 2 || len(r.Relation(orders.OID).Columns) != 4 {
		t.Fatalf("relation records %d, columns %d", n, len(r.Relation(orders.OID).Columns))
	}
}

func TestWriterRefusesBrokenTransactions(t *testing.T) {
	cases := []struct {
		name string
		fn   func(w *Writer) error
	}{
		{"commit before the previous end", func(w *Writer) error {
			w.BeginTx(TxInfo{XID: 1, CommitLSN: 100, EndLSN: 150, Changes: 0})
			w.CommitTx()
			return w.BeginTx(TxInfo{XID: 2, CommitLSN: 120, EndLSN: 200})
		}},
		{"commit before prev_end_lsn", func(w *Writer) error { return w.BeginTx(TxInfo{XID: 1, CommitLSN: 10, EndLSN: 20}) }},
		{"fewer changes than announced", func(w *Writer) error {
			w.BeginTx(TxInfo{XID: 1, CommitLSN: 100, EndLSN: 150, Changes: 2})
			w.WriteChange(&Record{T: TypeInsert})
			return w.CommitTx()
		}},
		{"more changes than announced", func(w *Writer) error {
			w.BeginTx(TxInfo{XID: 1, CommitLSN: 100, EndLSN: 150, Changes: 0})
			return w.WriteChange(&Record{T: TypeInsert})
		}},
		{"close inside a transaction", func(w *Writer) error {
			w.BeginTx(TxInfo{XID: 1, CommitLSN: 100, EndLSN: 150, Changes: 0})
			_, err := w.Close()
			return err
		}},
		{"change outside a transaction", func(w *Writer) error { return w.WriteChange(&Record{T: TypeInsert}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, _ := NewWriter(io.Discard, Header{PrevEndLSN: 50}, zstd.SpeedFastest)
			if err := c.fn(w); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestTruncatedAndCorruptSegmentsAreDetected(t *testing.T) {
	data, _ := writeSample(t)
	readAll := func(b []byte) error {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return err
		}
		defer r.Close()
		for {
			if _, err := r.Next(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	if err := readAll(data); err != nil {
		t.Fatal(err)
	}
	if err := readAll(data[:len(data)/2]); err == nil {
		t.Error("a truncated segment was read without error")
	}
	for _, pos := range []int{len(data) / 3, len(data) / 2, len(data) - 6} {
		flipped := append([]byte(nil), data...)
		flipped[pos] ^= 0x40
		if err := readAll(flipped); err == nil {
			t.Errorf("a flipped byte at %d went unnoticed", pos)
		}
	}
	// A segment without its trailer (writer crashed before Close).
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	zw.Write([]byte(`{"btfu_segment":1,"source":"s","chain":1,"prev_end_lsn":"0/0","created_at":"2026-11-23T00:00:00Z"}` + "\n"))
	zw.Close()
	if err := readAll(buf.Bytes()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no trailer: %v", err)
	}
}

func TestNewerFormatIsRefused(t *testing.T) {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	zw.Write([]byte(`{"btfu_segment":99,"source":"s"}` + "\n"))
	zw.Close()
	if _, err := NewReader(&buf); err == nil || !strings.Contains(err.Error(), "upgrade btfu") {
		t.Fatalf("got %v", err)
	}
}

func TestLargeTransactionStreamsWithBoundedMemory(t *testing.T) {
	// 200k changes go through without the writer holding them.
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		r, err := NewReader(pr)
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		n := 0
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			if rec.T == TypeInsert {
				n++
			}
		}
		io.Copy(io.Discard, pr)
		done <- n
	}()
	w, _ := NewWriter(pw, Header{Source: "s"}, zstd.SpeedFastest)
	const n = 200000
	w.BeginTx(TxInfo{XID: 1, CommitLSN: 100, EndLSN: 200, CommitTime: time.Now(), Changes: n})
	for i := 0; i < n; i++ {
		if err := w.WriteChange(&Record{T: TypeInsert, RelOID: orders.OID, New: []Value{TextValue("1"), TextValue("row"), {Kind: Null}}}, orders); err != nil {
			t.Fatal(err)
		}
	}
	w.CommitTx()
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-done; got != n {
		t.Fatalf("read %d inserts, want %d", got, n)
	}
}
