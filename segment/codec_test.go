package segment

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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

// checkUnmarshalLine decodes line with UnmarshalLine and with json.Unmarshal
// into a zero Record: same record, or the same error.
func checkUnmarshalLine(t *testing.T, line []byte) *Record {
	t.Helper()
	var want Record
	wantErr := json.Unmarshal(line, &want)
	got := Record{T: "garbage", XID: 7, New: []Value{TextValue("left over")}} // not a zero record
	err := got.UnmarshalLine(line)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Fatalf("line %q: error %v, json.Unmarshal: %v", line, err, wantErr)
	case err != nil:
		if err.Error() != wantErr.Error() {
			t.Fatalf("line %q: error %q, json.Unmarshal: %q", line, err, wantErr)
		}
		return nil
	case !reflect.DeepEqual(got, want):
		t.Fatalf("line %q:\n got %#v\nwant %#v", line, got, want)
	}
	// As a reader decodes: from slabs, out of a buffer it then reuses.
	var sl slabs
	buf := bytes.Clone(line)
	var fromSlabs Record
	if err := fromSlabs.unmarshalLine(buf, &sl); err != nil {
		t.Fatalf("line %q: from slabs: %v", line, err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	if !reflect.DeepEqual(fromSlabs, want) {
		t.Fatalf("line %q from slabs, its buffer since overwritten:\n got %#v\nwant %#v", line, fromSlabs, want)
	}
	return &got
}

// plainRun and its eight-bytes-at-a-time test agree with a byte loop
// for every byte at every place in a word and across words.
func TestPlainRun(t *testing.T) {
	slow := func(b []byte) int {
		for i, c := range b {
			if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
				return i
			}
		}
		return len(b)
	}
	for c := 0; c < 256; c++ {
		for n := 0; n <= 24; n++ {
			for at := 0; at <= n; at++ {
				b := bytes.Repeat([]byte("a"), n)
				if at < n {
					b[at] = byte(c)
				}
				if got, want := plainRun(b), slow(b); got != want {
					t.Fatalf("plainRun(%q) = %d, want %d", b, got, want)
				}
			}
		}
	}
}

// validUTF8 is what encoding/json makes of a string: each invalid byte
// replaced by U+FFFD.
func validUTF8(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	return sb.String()
}

// roundTripped is r as it comes back from a segment: NULL for kind 0, no
// empty omitempty slices, strings other than values made valid UTF-8, and
// the commit time compared apart (its location is not kept, its instant
// and offset are).
func roundTripped(r *Record) Record {
	c := *r
	c.CommitTime = nil
	fix := func(vals []Value) []Value {
		if len(vals) == 0 {
			return nil
		}
		out := make([]Value, len(vals))
		for i, v := range vals {
			if v.Kind == 0 {
				v.Kind = Null
			}
			out[i] = v
		}
		return out
	}
	c.Old, c.New = fix(c.Old), fix(c.New)
	if len(c.RelOIDs) == 0 {
		c.RelOIDs = nil
	}
	for _, s := range []*string{&c.T, &c.OldKind, &c.Prefix, &c.Content, &c.SQL, &c.Note} {
		*s = validUTF8(*s)
	}
	if r.Relation != nil {
		rel := *r.Relation
		rel.Schema, rel.Name, rel.ReplicaIdentity = validUTF8(rel.Schema), validUTF8(rel.Name), validUTF8(rel.ReplicaIdentity)
		if rel.Columns != nil {
			rel.Columns = append([]Column{}, rel.Columns...)
			for i := range rel.Columns {
				rel.Columns[i].Name, rel.Columns[i].Type = validUTF8(rel.Columns[i].Name), validUTF8(rel.Columns[i].Type)
			}
		}
		c.Relation = &rel
	}
	return c
}

func TestUnmarshalLineRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2))
	var line []byte
	for range 50000 {
		r := randRecord(rng)
		var err error
		if line, err = AppendRecord(line[:0], r); err != nil {
			t.Fatal(err)
		}
		var fast Record
		if !decodeLine(&fast, line, nil) {
			t.Fatalf("the fast decoder refused what AppendRecord wrote: %q", line)
		}
		got := checkUnmarshalLine(t, line)
		if got == nil {
			t.Fatalf("line %q: error", line)
		}
		if (got.CommitTime == nil) != (r.CommitTime == nil) {
			t.Fatalf("time %v came back as %v", r.CommitTime, got.CommitTime)
		}
		if got.CommitTime != nil {
			// RFC 3339 keeps the instant and the offset, in minutes.
			want, err := time.Parse(time.RFC3339Nano, r.CommitTime.Format(time.RFC3339Nano))
			if err != nil || !got.CommitTime.Equal(want) || zoneOffset(*got.CommitTime) != zoneOffset(want) {
				t.Fatalf("time %v came back as %v", r.CommitTime, got.CommitTime)
			}
		}
		if want := roundTripped(r); !reflect.DeepEqual(roundTripped(got), want) {
			t.Fatalf("line %q:\n got %#v\nwant %#v", line, *got, want)
		}
	}
	// Huge values, escaped and not, and a huge invalid one.
	huge := strings.Repeat("abc<é>\n\u2028", 1<<17)
	for _, s := range []string{huge, strings.Repeat("x", 1<<20), "\xff" + huge} {
		r := &Record{T: TypeInsert, New: []Value{TextValue(s), TextValue(s[1:])}, Content: s}
		line, _ := AppendRecord(nil, r)
		if got := checkUnmarshalLine(t, line); got == nil || !reflect.DeepEqual(roundTripped(got), roundTripped(r)) {
			t.Fatalf("a %d-byte value did not come back", len(s))
		}
	}
}

func zoneOffset(t time.Time) int {
	_, off := t.Zone()
	return off
}

// Lines the writer does not produce go through json.Unmarshal: same
// records, same errors.
func TestUnmarshalLineAsJSONUnmarshal(t *testing.T) {
	for _, line := range unusualLines {
		checkUnmarshalLine(t, []byte(line))
	}
}

var unusualLines = []string{
	``, ` `, `null`, `[]`, `"i"`, `{}`, `{}` + "\n", "{}\r\n \t", `{} x`, `{}{}`, `{`, `}`, `{"t":"i"`, `{"t":"i",}`, `{,"t":"i"}`,
	` {"t":"i"}`, `{ "t":"i"}`, `{"t" :"i"}`, `{"t": "i"}`, `{"t":"i" ,"r":1}`, `{"t":"i","new":[ "1"]}`, `{"t":"i","new":["1" ,null]}`,
	`{"T":"i"}`, `{"t":"i","T":"u"}`, `{"t":"i","t":"u"}`, `{"r":1,"t":"i"}`, `{"t":"i","extra":1}`, `{"t":"i","extra":{"a":[1,{}]}}`, `{"\u0074":"i"}`,
	`{"t":null}`, `{"t":1}`, `{"t":true}`, `{"t":"a\u0000b"}`, `{"t":"\ud83d\ude00"}`, `{"t":"\ud83d"}`, `{"t":"\ude00x"}`, `{"t":"\uD83D\uDE00"}`,
	`{"t":"\u00e9\u00E9\/\b\f\n\r\t\"\\"}`, `{"t":"\x"}`, `{"t":"\u12"}`, `{"t":"\u12g4"}`, "{\"t\":\"\x01\"}", "{\"t\":\"\xff\"}", "{\"t\":\"a\xe2\x80\"}", "{\"t\":\"é\"}",
	"{\"t\":\"\\u00e9\xff\"}", "{\"t\":\"\xff\\n\"}", `{"t":"\`, `{"t":"\u`, `{"t":"abc`,
	`{"xid":0}`, `{"xid":4294967295}`, `{"xid":4294967296}`, `{"xid":-1}`, `{"xid":-0}`, `{"xid":01}`, `{"xid":1.0}`, `{"xid":1e3}`, `{"xid":1E3}`, `{"xid":"1"}`, `{"xid":null}`, `{"xid":-}`,
	`{"n":-9223372036854775808}`, `{"n":9223372036854775807}`, `{"n":9223372036854775808}`, `{"n":-9223372036854775809}`, `{"n":99999999999999999999}`, `{"n":-0}`, `{"o":1,"n":2}`,
	`{"cascade":true,"restart_identity":false}`, `{"cascade":tru}`, `{"cascade":1}`, `{"cascade":null}`, `{"cascade":trueX}`,
	`{"lsn":"0/0"}`, `{"lsn":"16/B3748"}`, `{"lsn":"ffffffff/ffffffff"}`, `{"lsn":"1/2/3"}`, `{"lsn":"1"}`, `{"lsn":"/1"}`, `{"lsn":"1/"}`, `{"lsn":"123456789/0"}`, `{"lsn":"0x1/0"}`,
	`{"lsn":" 1/2"}`, `{"lsn":"1/2 "}`, `{"lsn":"1/2x"}`, `{"lsn":"+1/2"}`, `{"lsn":1}`, `{"lsn":null}`, `{"lsn":"\u0031/2"}`, `{"end":"1/2","lsn":"0/1"}`,
	`{"time":"2026-11-23T14:05:01.123456Z"}`, `{"time":"2026-11-23T14:05:01+05:30"}`, `{"time":"2026-11-23T14:05:01.1-08:00"}`, `{"time":"0000-01-01T00:00:00Z"}`,
	`{"time":"2026-11-23 14:05:01Z"}`, `{"time":"2026-11-23T14:05:01.Z"}`, `{"time":"2026-11-23T14:05:01+24:00"}`, `{"time":"\u0032026-11-23T14:05:01Z"}`,
	`{"time":null}`, `{"time":1}`, `{"time":""}`, `{"time":"2026-11-23T14:05:01Z`,
	`{"t":"i","new":[]}`, `{"t":"i","new":null}`, `{"t":"i","new":[null,"a",{"toast":"unchanged"},{"b64":"/w=="}]}`, `{"new":[nul]}`, `{"new":[{}]}`,
	`{"new":[{"toast":"x"}]}`, `{"new":[{"toast":"unchanged","b64":"AA=="}]}`, `{"new":[{"b64":"AA==","toast":"unchanged"}]}`, `{"new":[{ "toast":"unchanged"}]}`,
	`{"new":[{"b64":"!!"}]}`, `{"new":[{"b64":"AA="}]}`, `{"new":[{"b64":"AAA"}]}`, `{"new":[{"b64":""}]}`, `{"new":[{"b64":"AB=="}]}`, `{"new":[{"b64":"A\nA=="}]}`, `{"new":[{"b64":null}]}`,
	`{"new":[{"TOAST":"unchanged"}]}`, `{"new":[1]}`, `{"new":[true]}`, `{"new":[[]]}`, `{"new":["a",]}`, `{"new":["a"`, `{"new":{}}`, `{"new":"a"}`,
	`{"old":["1",null],"old_kind":"K","new":["1","x"]}`, `{"new":["\u003c\u003e\u0026\u2028"]}`,
	`{"rels":[]}`, `{"rels":[1,2,4294967295]}`, `{"rels":[-1]}`, `{"rels":null}`, `{"rels":[1,]}`, `{"rels":["1"]}`,
	`{"rel":{}}`, `{"rel":null}`, `{"rel":{"oid":1,"schema":"s","name":"n","ident":"d","cols":null}}`, `{"rel":{"cols":[]}}`,
	`{"rel":{"oid":1,"cols":[{"name":"a","type_oid":25,"type":"text","typmod":-1,"key":true},{"name":"b","type_oid":23,"type":"int","typmod":-1}]}}`,
	`{"rel":{"cols":[{}]}}`, `{"rel":{"cols":[{"key":false}]}}`, `{"rel":{"cols":[{"typmod":-2147483648}]}}`, `{"rel":{"cols":[{"typmod":2147483648}]}}`, `{"rel":{"cols":[{"typmod":-2147483649}]}}`,
	`{"rel":{"cols":[{"name":"a","name":"b"}]}}`, `{"rel":{"oid":1,"oid":2}}`, `{"rel":{"x":1}}`, `{"rel":{"cols":[{"x":1}]}}`, `{"rel":{"cols":[null]}}`, `{"rel":{"cols":{}}}`, `{"rel":{"cols":[{},]}}`,
	`{"rel":[]}`, `{"rel":{"oid":-1}}`, `{"rel":{"Oid":5}}`,
	`{"prefix":"btfu.ddl","content":"{\"tag\":\"ALTER TABLE\"}"}`, `{"sql":"ALTER TABLE \"a\"","note":"n"}`,
}

func FuzzUnmarshalLine(f *testing.F) {
	rng := rand.New(rand.NewPCG(14, 3))
	for range 200 {
		line, err := AppendRecord(nil, randRecord(rng))
		if err == nil {
			f.Add(line)
		}
	}
	for _, line := range unusualLines {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkUnmarshalLine(t, line)
	})
}
