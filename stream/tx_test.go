package stream

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/segment"
	"github.com/klauspost/compress/zstd"
)

type change struct {
	xid  uint32
	rels []*segment.Relation
	rec  segment.Record
}

var (
	relA  = &segment.Relation{OID: 100, Schema: "public", Name: "a", ReplicaIdentity: "d", Columns: []segment.Column{{Name: "id", TypeOID: 23, Type: "integer", TypMod: -1, Key: true}, {Name: "v", TypeOID: 25, Type: "text", TypMod: -1}}}
	relA2 = &segment.Relation{OID: 100, Schema: "public", Name: "a", ReplicaIdentity: "f", Columns: []segment.Column{{Name: "id", TypeOID: 23, Type: "integer", TypMod: -1}, {Name: "v", TypeOID: 25, Type: "text", TypMod: -1}, {Name: "w", TypeOID: 16, Type: "boolean", TypMod: -1}}}
	relB  = &segment.Relation{OID: 200, Schema: "s\u00e9", Name: "b\"\n", ReplicaIdentity: "n", Columns: []segment.Column{}}
)

// sampleChanges: every kind of change, in a top-level transaction (xid 42)
// and two subtransactions (43 aborted), with relations changing shape.
func sampleChanges(n int) []change {
	var out []change
	huge := strings.Repeat("huge \u2028 value\n", 6<<20/16) // over the reused buffers' limit
	for i := range n {
		id := strconv.Itoa(i)
		xid := uint32(42)
		if i%7 == 3 {
			xid = 43
		} else if i%11 == 5 {
			xid = 44
		}
		rel := relA
		if i > n/2 {
			rel = relA2
		}
		var c change
		switch i % 9 {
		case 0, 1, 2:
			c = change{xid, []*segment.Relation{rel}, segment.Record{T: segment.TypeInsert, RelOID: rel.OID, New: []segment.Value{segment.TextValue(id), segment.TextValue("v<" + id + ">\n\t\"")}}}
		case 3:
			c = change{xid, []*segment.Relation{rel}, segment.Record{T: segment.TypeUpdate, RelOID: rel.OID, OldKind: "K", Old: []segment.Value{segment.TextValue(id), {Kind: segment.Null}}, New: []segment.Value{segment.TextValue(id), {Kind: segment.Unchanged}}}}
		case 4:
			c = change{xid, []*segment.Relation{rel}, segment.Record{T: segment.TypeDelete, RelOID: rel.OID, OldKind: "O", Old: []segment.Value{segment.TextValue(id), segment.TextValue("\xff\xfe" + id)}}}
		case 5:
			c = change{xid, []*segment.Relation{relA, relB}, segment.Record{T: segment.TypeTruncate, RelOIDs: []uint32{relA.OID, relB.OID}, Cascade: i%2 == 0, RestartIdentity: true}}
		case 6:
			c = change{xid, nil, segment.Record{T: segment.TypeMessage, Prefix: segment.DDLMessagePrefix, Content: `{"tag":"ALTER TABLE","query":"ALTER TABLE a ADD w bool -- ` + id + `"}`}}
		case 7:
			c = change{xid, []*segment.Relation{rel}, segment.Record{T: segment.TypeDDL, RelOID: rel.OID, SQL: "ALTER TABLE public.a ADD COLUMN w boolean", Note: "derived from a relation message"}}
		case 8:
			c = change{xid, nil, segment.Record{T: segment.TypeMessage, Prefix: segment.TableMessagePrefix, Content: `{"v":1,"action":"joined","schema":"public","table":"t` + id + `"}`}}
		}
		if i == n/3 {
			c = change{42, []*segment.Relation{relB}, segment.Record{T: segment.TypeInsert, RelOID: relB.OID, New: []segment.Value{segment.TextValue(huge), segment.TextValue(huge + "\xff"), {Kind: segment.Null}}}}
		}
		out = append(out, c)
	}
	return out
}

// buildTx runs changes through a builder with the given memory limit.
func buildTx(t *testing.T, changes []change, limit int) *Tx {
	t.Helper()
	b := newBuilder(42, t.TempDir(), limit)
	for _, c := range changes {
		if err := b.add(c.xid, c.rels, c.rec); err != nil {
			t.Fatal(err)
		}
	}
	b.abortSub(43)
	tx, err := b.finish(segment.TxInfo{XID: 42, CommitLSN: 0x1000, EndLSN: 0x1100, CommitTime: time.Date(2026, 11, 23, 14, 5, 1, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// spoolSegmentOf writes tx into a segment and returns it decompressed.
func spoolSegmentOf(t *testing.T, tx *Tx) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{Source: "t", CreatedAt: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(&buf)
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A spooled transaction makes the same segment as one held in memory:
// every change outside the aborted subtransaction, in order, with the
// relations each needs.
func TestSpooledTransactionWritesWhatMemoryWould(t *testing.T) {
	changes := sampleChanges(3000)
	inMemory := buildTx(t, changes, 1<<40)
	spooled := buildTx(t, changes, 4<<10)
	defer inMemory.Release()
	defer spooled.Release()
	if inMemory.spool != nil || spooled.spool == nil {
		t.Fatalf("spooled: in memory %v, small limit %v", inMemory.spool != nil, spooled.spool != nil)
	}
	if spooled.Info.Changes != inMemory.Info.Changes || !reflect.DeepEqual(spooled.TableEvents, inMemory.TableEvents) {
		t.Fatalf("info %+v / %+v, table events %d / %d", spooled.Info, inMemory.Info, len(spooled.TableEvents), len(inMemory.TableEvents))
	}
	want := spoolSegmentOf(t, inMemory)
	got := spoolSegmentOf(t, spooled)
	// Equal bytes, but for the one string outside a value that is not
	// UTF-8 (none here): JSON carries it as U+FFFD in both, escaped or not.
	if !bytes.Equal(got, want) {
		g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("line %d of %d:\n got %.200q\nwant %.200q", i, len(w), g[i], w[i])
			}
		}
		t.Fatalf("%d lines, want %d", len(g), len(w))
	}
}

// Spooling a change allocates nothing, and reading it back for the
// segment a few times (its string and values), not encoding/json's dozens.
func TestSpoolAllocations(t *testing.T) {
	b := newBuilder(42, t.TempDir(), 0)
	defer b.discard()
	rec := segment.Record{T: segment.TypeInsert, RelOID: relA.OID, New: []segment.Value{segment.TextValue("1"), segment.TextValue("a value"), {Kind: segment.Null}, segment.TextValue("2026-11-23 14:05:01+00"), segment.TextValue("12.50")}}
	rels := []*segment.Relation{relA}
	if err := b.add(42, rels, rec); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	if a := testing.AllocsPerRun(n-1, func() {
		if err := b.add(42, rels, rec); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("spooling a change allocates %v times", a)
	}
	tx, err := b.finish(segment.TxInfo{XID: 42, CommitLSN: 0x1000, EndLSN: 0x1100, CommitTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := segment.NewWriter(io.Discard, segment.Header{Source: "t"}, zstd.SpeedFastest)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := tx.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if a := float64(after.Mallocs-before.Mallocs) / n; a > 2.1 {
		t.Errorf("writing a spooled change allocates %.2f times", a)
	}
	tx.Release()
}

// A damaged spool is an error, not a short transaction.
func TestDamagedSpoolIsAnError(t *testing.T) {
	changes := sampleChanges(200)
	for _, cut := range []int64{1, 100, 5000} {
		tx := buildTx(t, changes, 1<<10)
		fi, err := tx.spool.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(tx.spool.Name(), fi.Size()-cut); err != nil {
			t.Fatal(err)
		}
		w, _ := segment.NewWriter(io.Discard, segment.Header{Source: "t"}, zstd.SpeedFastest)
		if err := tx.WriteTo(w); err == nil || !strings.Contains(err.Error(), "read spool of transaction 42") {
			t.Errorf("spool cut by %d bytes: %v", cut, err)
		}
		tx.Release()
	}
}

// BenchmarkSpool: one op is one five-column insert spooled and then read
// back into a segment (zstd at capture's level), as a large transaction's
// changes go.
func BenchmarkSpool(b *testing.B) {
	rels := []*segment.Relation{relA}
	recs := make([]segment.Record, 1024)
	for i := range recs {
		id := strconv.Itoa(1000000 + i)
		recs[i] = segment.Record{T: segment.TypeInsert, RelOID: relA.OID, New: []segment.Value{segment.TextValue(id), segment.TextValue("customer " + id),
			segment.TextValue("c" + id + "@example.com"), segment.TextValue(strconv.Itoa(i) + ".50"), segment.TextValue("2026-11-23 14:05:01.123456+00")}}
	}
	b.ReportAllocs()
	bd := newBuilder(42, b.TempDir(), 0)
	for i := 0; i < b.N; i++ {
		if err := bd.add(42, rels, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	tx, err := bd.finish(segment.TxInfo{XID: 42, CommitLSN: 0x1000, EndLSN: 0x1100, CommitTime: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Release()
	w, _ := segment.NewWriter(io.Discard, segment.Header{Source: "t"}, zstd.SpeedDefault)
	if err := tx.WriteTo(w); err != nil {
		b.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
