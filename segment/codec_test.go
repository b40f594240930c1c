package segment

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// jsonLine is what the writer produced before AppendRecord: the bytes the
// segment format is defined by.
func jsonLine(t testing.TB, r *Record) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(r)
	return buf.Bytes(), err
}

// Pieces of awkward text: escapes, HTML characters, JSONP separators,
// control characters, invalid UTF-8 of several kinds, non-ASCII.
var textPieces = []string{
	"", "plain", "1", "null", "true", " ", "<>&", "</script>", "a&b", "\u2028", "\u2029", "x\u2028y\u2029z",
	"\x00", "\x01\x02\x1f", "\b\f\n\r\t", "\x7f", `"`, `\`, `\"\\`, `\u0041`, "é", "漢字", "😀", "\ufffd", "\ufeff",
	"\xff", "\xfe\xff", "\xed\xa0\x80", "\xe2\x80", "\xe2\x80\xa8", "\xc0\xaf", "\xf4\x90\x80\x80", "a\xffb",
	"{\"toast\":\"unchanged\"}", `{"b64":"AA=="}`, "0/16B3748", "2026-11-23T14:05:01Z", "O'Brien", "{1,2,\"x\"}",
	"\\x00ff", "line1\nline2", "tab\there", "\u00a0", "\u0085", "\u200b", "\U0010ffff",
}

func randText(rng *rand.Rand) string {
	switch rng.IntN(20) {
	case 0: // random bytes
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return string(b)
	case 1: // random runes
		var sb strings.Builder
		for range rng.IntN(20) {
			sb.WriteRune(rune(rng.IntN(0x110000)))
		}
		return sb.String()
	}
	var sb strings.Builder
	for range rng.IntN(5) {
		sb.WriteString(textPieces[rng.IntN(len(textPieces))])
	}
	return sb.String()
}

func randValues(rng *rand.Rand) []Value {
	switch rng.IntN(10) {
	case 0:
		return nil
	case 1:
		return []Value{}
	}
	vals := make([]Value, 1+rng.IntN(8))
	for i := range vals {
		switch rng.IntN(6) {
		case 0:
			vals[i] = Value{Kind: Null}
		case 1:
			vals[i] = Value{} // kind 0 is NULL too
		case 2:
			vals[i] = Value{Kind: Unchanged}
		default:
			vals[i] = TextValue(randText(rng))
		}
	}
	return vals
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 0), time.FixedZone("IST", 5*3600+1800), time.FixedZone("PST", -8*3600),
	time.FixedZone("odd", 3600+17), time.FixedZone("LMT", -(23*3600 + 59*60))}

func randTime(rng *rand.Rand) *time.Time {
	var t time.Time
	switch rng.IntN(6) {
	case 0:
		return nil
	case 1: // zero time
	case 2:
		t = time.Date(2026, 11, 23, 14, 5, 1, 0, time.UTC)
	case 3: // trailing zeros of the fraction are trimmed
		t = time.Date(2026, 11, 23, 14, 5, 1, 120000000, time.UTC)
	default:
		t = time.Unix(rng.Int64N(253402300799), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))])
	}
	return &t
}

func randRelation(rng *rand.Rand) *Relation {
	rel := &Relation{OID: rng.Uint32(), Schema: randText(rng), Name: randText(rng), ReplicaIdentity: []string{"d", "f", "i", "n", ""}[rng.IntN(5)]}
	switch rng.IntN(5) {
	case 0: // nil: "cols":null
	case 1:
		rel.Columns = []Column{}
	default:
		for range 1 + rng.IntN(6) {
			rel.Columns = append(rel.Columns, Column{Name: randText(rng), TypeOID: rng.Uint32(), Type: randText(rng), TypMod: int32(rng.Uint32()), Key: rng.IntN(2) == 0})
		}
	}
	return rel
}

// randRecord is a record of a random type; most fields are those of its
// type, some are not (the codec must not care).
func randRecord(rng *rand.Rand) *Record {
	types := []string{TypeRelation, TypeBegin, TypeInsert, TypeUpdate, TypeDelete, TypeTruncate, TypeMessage, TypeDDL, TypeCommit, TypeEnd}
	r := &Record{T: types[rng.IntN(len(types))]}
	num := func() int {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.IntN(1 << 20)
		case 2:
			return int(rng.Int64())
		}
		return rng.IntN(1000)
	}
	lsn := func() TextLSN {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return TextLSN(rng.Uint64())
		}
		return TextLSN(rng.Uint64N(1 << 36))
	}
	switch r.T {
	case TypeRelation:
		r.Relation = randRelation(rng)
	case TypeBegin, TypeCommit, TypeEnd:
		r.XID, r.CommitLSN, r.EndLSN, r.Changes = rng.Uint32()>>rng.IntN(32), lsn(), lsn(), num()
		if r.T == TypeBegin {
			r.CommitTime = randTime(rng)
		}
	case TypeInsert, TypeUpdate, TypeDelete:
		r.Ordinal, r.RelOID = num(), rng.Uint32()
		r.Old, r.New = randValues(rng), randValues(rng)
		if rng.IntN(2) == 0 {
			r.OldKind = []string{"K", "O", ""}[rng.IntN(3)]
		}
	case TypeTruncate:
		r.Ordinal = num()
		for range rng.IntN(4) {
			r.RelOIDs = append(r.RelOIDs, rng.Uint32())
		}
		if rng.IntN(5) == 0 {
			r.RelOIDs = []uint32{}
		}
		r.Cascade, r.RestartIdentity = rng.IntN(2) == 0, rng.IntN(2) == 0
	case TypeMessage:
		r.Ordinal, r.Prefix, r.Content = num(), randText(rng), randText(rng)
	case TypeDDL:
		r.Ordinal, r.RelOID, r.SQL, r.Note = num(), rng.Uint32(), randText(rng), randText(rng)
	}
	if rng.IntN(10) == 0 { // anything else, anywhere
		r.XID, r.RelOID, r.Changes, r.Ordinal = rng.Uint32(), rng.Uint32(), num(), num()
		r.OldKind, r.Prefix, r.Content, r.SQL, r.Note = randText(rng), randText(rng), randText(rng), randText(rng), randText(rng)
		r.CommitTime, r.Cascade = randTime(rng), rng.IntN(2) == 0
		if rng.IntN(2) == 0 {
			r.Relation = randRelation(rng)
		}
	}
	if rng.IntN(50) == 0 {
		r.T = randText(rng)
	}
	return r
}

func checkAppendRecord(t *testing.T, r *Record) {
	t.Helper()
	want, wantErr := jsonLine(t, r)
	prefix := []byte("prefix\n")
	got, err := AppendRecord(prefix, r)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Fatalf("record %+v: error %v, encoding/json: %v", r, err, wantErr)
	case err != nil:
		if err.Error() != wantErr.Error() || string(got) != "prefix\n" {
			t.Fatalf("record %+v: error %q (wrote %q), encoding/json: %q", r, err, got, wantErr)
		}
	case !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want):
		t.Fatalf("record %+v:\n got %q\nwant %q", r, got, want)
	}
}

func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	for range 50000 {
		checkAppendRecord(t, randRecord(rng))
	}
	// Every byte and a few code points on their own, in values (HTML
	// escaped by Value.MarshalJSON) and elsewhere (not).
	for c := range 256 {
		s := string([]byte{'a', byte(c), 'b'})
		checkAppendRecord(t, &Record{T: TypeMessage, Prefix: s, Content: s[1:2]})
		checkAppendRecord(t, &Record{T: TypeInsert, New: []Value{TextValue(s), TextValue(s[1:2])}})
	}
	for _, s := range textPieces {
		checkAppendRecord(t, &Record{T: s, OldKind: s, Prefix: s, Content: s, SQL: s, Note: s, Old: []Value{TextValue(s)}, New: []Value{TextValue(s)},
			Relation: &Relation{Schema: s, Name: s, ReplicaIdentity: s, Columns: []Column{{Name: s, Type: s}}}})
	}
	// Huge values, valid UTF-8 and not (base64 in chunks).
	huge := strings.Repeat("abc<é>\n\u2028", 1<<17)
	for _, s := range []string{huge, huge + "\xff", "\xff" + strings.Repeat("x", 3*1024-1), "\xff" + strings.Repeat("x", 3*1024), "\xff" + strings.Repeat("x", 3*1024+1)} {
		checkAppendRecord(t, &Record{T: TypeInsert, RelOID: 1, Ordinal: 1, New: []Value{TextValue(s), TextValue(s[1:])}, Content: s})
	}
	// Extremes of numbers, LSNs and times.
	for _, tm := range []time.Time{{}, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 1, zones[4])} {
		checkAppendRecord(t, &Record{T: TypeBegin, XID: ^uint32(0), CommitLSN: ^TextLSN(0), EndLSN: 1, CommitTime: &tm, Changes: -1 << 63, Ordinal: 1<<63 - 1, RelOID: ^uint32(0)})
	}
	checkAppendRecord(t, &Record{})
	checkAppendRecord(t, &Record{T: TypeRelation, Relation: &Relation{}})
	checkAppendRecord(t, &Record{T: TypeTruncate, RelOIDs: []uint32{0, 1, ^uint32(0)}, Cascade: true})
}

func TestAppendRecordFailsAsEncodingJSON(t *testing.T) {
	y10000 := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	yMinus1 := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
	zone24 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))
	for _, r := range []*Record{
		{T: TypeInsert, New: []Value{TextValue("1"), {Kind: 'x'}}},
		{T: TypeUpdate, Old: []Value{{Kind: 'T'}}, New: []Value{TextValue("1")}},
		{T: TypeBegin, CommitTime: &y10000},
		{T: TypeBegin, CommitTime: &yMinus1},
		{T: TypeBegin, CommitTime: &zone24},
	} {
		checkAppendRecord(t, r)
		if _, err := AppendRecord(nil, r); err == nil {
			t.Fatalf("record %+v encoded", r)
		}
	}
}

func FuzzAppendRecord(f *testing.F) {
	f.Add("i", "public", "a<b>\u2028\xff", []byte{2, 9, 0, 17, 255}, uint64(0x16B3748), int64(1795000000), int64(123456789), int32(3600), uint8(0))
	f.Add("begin", "", "", []byte{}, uint64(1<<40), int64(-62135596800), int64(0), int32(0), uint8(0xff))
	f.Add("rel", "\x00", "\"\\", []byte{1, 1, 1}, uint64(0), int64(253402300800), int64(0), int32(-86400), uint8(0x5a))
	f.Fuzz(func(t *testing.T, typ, a, b string, kinds []byte, n uint64, sec, nsec int64, zone int32, flags uint8) {
		r := &Record{T: typ, XID: uint32(n), CommitLSN: TextLSN(n), EndLSN: TextLSN(n >> 7), Changes: int(sec), Ordinal: int(nsec), RelOID: uint32(n >> 32),
			OldKind: a, Prefix: a, Content: b, SQL: b + a, Note: a + b, Cascade: flags&1 != 0, RestartIdentity: flags&2 != 0}
		if flags&4 != 0 {
			tm := time.Unix(sec, nsec).In(time.FixedZone(a, int(zone)))
			r.CommitTime = &tm
		}
		var vals []Value
		rest := b
		for _, k := range kinds {
			v := Value{Kind: "nut\x00"[k%4]}
			if k%32 == 31 {
				v.Kind = k // unknown kinds too
			}
			if v.Kind == Text {
				m := int(k>>2) % (len(rest) + 1)
				v.Text, rest = rest[:m], rest[m:]
			}
			vals = append(vals, v)
			r.RelOIDs = append(r.RelOIDs, uint32(k)<<uint(k%32))
		}
		if flags&8 != 0 {
			r.New = vals
		}
		if flags&16 != 0 {
			r.Old = vals
		}
		if flags&32 != 0 {
			r.Relation = &Relation{OID: uint32(n), Schema: a, Name: b, ReplicaIdentity: typ}
			if flags&64 != 0 {
				r.Relation.Columns = []Column{}
			}
			for i, k := range kinds {
				r.Relation.Columns = append(r.Relation.Columns, Column{Name: a[:min(i, len(a))], TypeOID: uint32(k), Type: b[min(i, len(b)):], TypMod: int32(zone) >> (k % 32), Key: k&1 != 0})
			}
		}
		checkAppendRecord(t, r)
	})
}
