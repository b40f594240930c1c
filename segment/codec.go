package segment

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// A reflection-free codec for records (issue 14): encoding/json spends
// most of capture's and restore's CPU on them. The bytes are exactly what
// encoding/json writes for a Record (the segment format is defined by
// that), which the tests check against encoding/json itself.

// AppendRecord appends r to dst as one segment line: exactly the bytes a
// json.Encoder with SetEscapeHTML(false) writes for r, trailing newline
// included. On error (what encoding/json refuses too: a value of unknown
// kind, a commit time RFC 3339 cannot represent) it returns dst unchanged
// and encoding/json's error.
func AppendRecord(dst []byte, r *Record) ([]byte, error) {
	out, ok := appendRecord(dst, r)
	if !ok {
		// Rare: let encoding/json say what is wrong, in its own words. A
		// copy, so r itself does not escape to the heap on every call.
		c := *r
		_, err := json.Marshal(&c)
		if err == nil {
			err = fmt.Errorf("segment: cannot encode %q record", r.T)
		}
		return dst, err
	}
	return out, nil
}

func appendRecord(b []byte, r *Record) ([]byte, bool) {
	b = append(b, `{"t":`...)
	b = appendString(b, r.T, false)
	if r.Relation != nil {
		b = append(b, `,"rel":`...)
		b = appendRelation(b, r.Relation)
	}
	if r.XID != 0 {
		b = append(b, `,"xid":`...)
		b = strconv.AppendUint(b, uint64(r.XID), 10)
	}
	if r.CommitLSN != 0 {
		b = append(b, `,"lsn":`...)
		b = appendLSN(b, r.CommitLSN)
	}
	if r.EndLSN != 0 {
		b = append(b, `,"end":`...)
		b = appendLSN(b, r.EndLSN)
	}
	if r.CommitTime != nil {
		b = append(b, `,"time":"`...)
		var err error
		if b, err = r.CommitTime.AppendText(b); err != nil {
			return b, false
		}
		b = append(b, '"')
	}
	if r.Changes != 0 {
		b = append(b, `,"n":`...)
		b = strconv.AppendInt(b, int64(r.Changes), 10)
	}
	if r.Ordinal != 0 {
		b = append(b, `,"o":`...)
		b = strconv.AppendInt(b, int64(r.Ordinal), 10)
	}
	if r.RelOID != 0 {
		b = append(b, `,"r":`...)
		b = strconv.AppendUint(b, uint64(r.RelOID), 10)
	}
	var ok bool
	if len(r.Old) > 0 {
		b = append(b, `,"old":`...)
		if b, ok = appendValues(b, r.Old); !ok {
			return b, false
		}
	}
	if r.OldKind != "" {
		b = append(b, `,"old_kind":`...)
		b = appendString(b, r.OldKind, false)
	}
	if len(r.New) > 0 {
		b = append(b, `,"new":`...)
		if b, ok = appendValues(b, r.New); !ok {
			return b, false
		}
	}
	if len(r.RelOIDs) > 0 {
		b = append(b, `,"rels":[`...)
		for i, oid := range r.RelOIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(oid), 10)
		}
		b = append(b, ']')
	}
	if r.Cascade {
		b = append(b, `,"cascade":true`...)
	}
	if r.RestartIdentity {
		b = append(b, `,"restart_identity":true`...)
	}
	if r.Prefix != "" {
		b = append(b, `,"prefix":`...)
		b = appendString(b, r.Prefix, false)
	}
	if r.Content != "" {
		b = append(b, `,"content":`...)
		b = appendString(b, r.Content, false)
	}
	if r.SQL != "" {
		b = append(b, `,"sql":`...)
		b = appendString(b, r.SQL, false)
	}
	if r.Note != "" {
		b = append(b, `,"note":`...)
		b = appendString(b, r.Note, false)
	}
	return append(b, '}', '\n'), true
}

func appendRelation(b []byte, rel *Relation) []byte {
	b = append(b, `{"oid":`...)
	b = strconv.AppendUint(b, uint64(rel.OID), 10)
	b = append(b, `,"schema":`...)
	b = appendString(b, rel.Schema, false)
	b = append(b, `,"name":`...)
	b = appendString(b, rel.Name, false)
	b = append(b, `,"ident":`...)
	b = appendString(b, rel.ReplicaIdentity, false)
	b = append(b, `,"cols":`...)
	if rel.Columns == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range rel.Columns {
			c := &rel.Columns[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, c.Name, false)
			b = append(b, `,"type_oid":`...)
			b = strconv.AppendUint(b, uint64(c.TypeOID), 10)
			b = append(b, `,"type":`...)
			b = appendString(b, c.Type, false)
			b = append(b, `,"typmod":`...)
			b = strconv.AppendInt(b, int64(c.TypMod), 10)
			if c.Key {
				b = append(b, `,"key":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendLSN writes what encoding/json makes of TextLSN.MarshalText: "X/Y",
// upper-case hexadecimal halves without leading zeros.
func appendLSN(b []byte, l TextLSN) []byte {
	b = append(b, '"')
	b = appendHexUpper(b, uint32(l>>32))
	b = append(b, '/')
	b = appendHexUpper(b, uint32(l))
	return append(b, '"')
}

func appendHexUpper(b []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	var tmp [8]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[v&0xF]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

func appendValues(b []byte, vals []Value) ([]byte, bool) {
	b = append(b, '[')
	for i := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		switch v := &vals[i]; v.Kind {
		case Null, 0:
			b = append(b, "null"...)
		case Unchanged:
			b = append(b, `{"toast":"unchanged"}`...)
		case Text:
			// Value.MarshalJSON goes through json.Marshal, which escapes
			// <, > and & whatever the encoder's setting; encoding/json
			// then copies that output as it is.
			if utf8.ValidString(v.Text) {
				b = appendString(b, v.Text, true)
			} else {
				b = append(b, `{"b64":"`...)
				b = appendBase64(b, v.Text)
				b = append(b, `"}`...)
			}
		default:
			return b, false
		}
	}
	return append(b, ']'), true
}

// appendBase64 appends the standard base64 encoding of s without
// converting all of s to a []byte (values may be a gigabyte).
func appendBase64(b []byte, s string) []byte {
	var chunk [3 * 1024]byte // a multiple of 3: padding only at the end
	for len(s) > 0 {
		n := copy(chunk[:], s)
		b = base64.StdEncoding.AppendEncode(b, chunk[:n])
		s = s[n:]
	}
	return b
}

// appendString appends s as encoding/json does (encode.go, appendString):
// ", \ and control characters escaped (\b \f \n \r \t short, others as
// \u00XX), <, > and & as \u00XX when escapeHTML, U+2028 and U+2029 as
// \u2028 and \u2029, each byte of invalid UTF-8 as \ufffd; the rest as is.
func appendString(b []byte, s string, escapeHTML bool) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] && (!escapeHTML || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonSafe: ASCII bytes written as they are in a JSON string (all but
// control characters, " and \).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// UnmarshalLine sets r to the record in line, one segment line with or
// without its newline, exactly as json.Unmarshal into a zero Record would,
// errors included. What AppendRecord writes is decoded without
// reflection; anything else (whitespace between tokens, escapes it does
// not know, unknown or repeated fields, numbers or types a field does not
// take, invalid UTF-8) goes through json.Unmarshal.
func (r *Record) UnmarshalLine(line []byte) error {
	return r.unmarshalLine(line, nil)
}

// unmarshalLine is UnmarshalLine taking what the record holds from slabs
// (nil: an allocation each).
func (r *Record) unmarshalLine(line []byte, sl *slabs) error {
	*r = Record{}
	if decodeLine(r, line, sl) {
		return nil
	}
	// A copy, so that r does not escape to the heap on every call.
	var c Record
	err := json.Unmarshal(line, &c)
	*r = c
	if sl != nil {
		sl.notUTF8++ // its values may hold base64
	}
	return err
}

// shareMax: a line up to this size becomes one string whose substrings
// are the record's strings (one allocation per record); a larger one is
// converted field by field, so a huge value is not held twice.
const shareMax = 64 << 10

type lineDecoder struct {
	b  []byte
	s  string // b as a string, when len(b) <= shareMax
	i  int
	sl *slabs
}

// slabs hand out the value slices and the text of a reader's records
// from larger allocations (a reader decodes millions of small records).
type slabs struct {
	vals []Value
	text []byte // copies of change lines; their values' strings point into it
	// notUTF8 counts the values decoded that may not be valid UTF-8
	// (Reader.NotUTF8)
	notUTF8 int64
}

// textSlab is the size of a text slab: a string kept from one change
// keeps at most this much memory alive.
const textSlab = 32 << 10

func (s *slabs) values(n int) []Value {
	if s == nil || n > 64 {
		return make([]Value, n)
	}
	if len(s.vals) < n {
		s.vals = make([]Value, 1024)
	}
	v := s.vals[:n:n]
	s.vals = s.vals[n:]
	return v
}

// lineText is line as a string. A small change line (most of a segment)
// is copied into the current text slab; any other line, a relation's or a
// DDL's (kept for as long as the reader), gets an allocation of its own.
func (s *slabs) lineText(line []byte, change bool) string {
	if s == nil || len(line) > textSlab/8 || !change {
		return string(line)
	}
	if cap(s.text)-len(s.text) < len(line) {
		s.text = make([]byte, 0, textSlab)
	}
	off := len(s.text)
	s.text = append(s.text, line...)
	// The slab's bytes are never written again once appended.
	return unsafe.String(&s.text[off], len(line))
}

// changePrefix is how AppendRecord starts an insert, update or delete
// line: `{"t":"` then the type's letter and '"'.
const changePrefix = `{"t":"`

// changeType is the type of the change line starts, "" when it starts
// otherwise.
func changeType(line []byte) string {
	if len(line) < len(changePrefix)+2 || string(line[:len(changePrefix)]) != changePrefix || line[len(changePrefix)+1] != '"' {
		return ""
	}
	switch line[len(changePrefix)] {
	case 'i':
		return TypeInsert
	case 'u':
		return TypeUpdate
	case 'd':
		return TypeDelete
	}
	return ""
}

// sub is b[i:j] as a string.
func (d *lineDecoder) sub(i, j int) string {
	if d.s != "" {
		return d.s[i:j]
	}
	return string(d.b[i:j])
}

func (d *lineDecoder) next(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *lineDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *lineDecoder) literal(lit string) bool {
	if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// key reads `"name":` with a plain ASCII name.
func (d *lineDecoder) key() ([]byte, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			k := d.b[start:d.i]
			d.i++
			return k, d.next(':')
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// str reads a JSON string. It gives up (ok false) on what json.Unmarshal
// would reject or repair: control characters, invalid UTF-8, escaped
// surrogates.
func (d *lineDecoder) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	start, ascii := d.i, true
	for i := start; i < len(d.b); i++ {
		i += plainRun(d.b[i:])
		if i >= len(d.b) {
			break
		}
		switch c := d.b[i]; {
		case c == '"':
			if !ascii && !utf8.Valid(d.b[start:i]) {
				return "", false
			}
			d.i = i + 1
			return d.sub(start, i), true
		case c == '\\':
			return d.strEscaped(start)
		case c < 0x20:
			return "", false
		default: // c >= utf8.RuneSelf
			ascii = false
		}
	}
	return "", false
}

// plainRun is how many bytes b starts with that a JSON string holds as
// they are: printable ASCII other than '"' and '\\'. It looks at eight
// bytes at a time (a value's text is most of a segment's bytes).
func plainRun(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q := w ^ (ones * '"')
		s := w ^ (ones * '\\')
		// A byte is flagged when it is zero in q or s (the classic
		// "has zero byte" test), below 0x20, or has its high bit set.
		if ((q-ones)&^q|(s-ones)&^s|(w-ones*0x20)&^w|w)&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
	}
	return i
}

func (d *lineDecoder) strEscaped(start int) (string, bool) {
	end := start // the closing quote, to size the result
	for end < len(d.b) && d.b[end] != '"' {
		if d.b[end] == '\\' {
			end++
		}
		end++
	}
	var sb strings.Builder
	sb.Grow(end - start)
	run, ascii := start, true
	flush := func(i int) bool {
		if !ascii && !utf8.Valid(d.b[run:i]) {
			return false
		}
		sb.Write(d.b[run:i])
		return true
	}
	for i := start; i < len(d.b); {
		c := d.b[i]
		switch {
		case c == '"':
			if !flush(i) {
				return "", false
			}
			d.i = i + 1
			return sb.String(), true
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
			i++
			continue
		case c != '\\':
			i++
			continue
		}
		if !flush(i) || i+1 >= len(d.b) {
			return "", false
		}
		switch e := d.b[i+1]; e {
		case '"', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			if i+6 > len(d.b) {
				return "", false
			}
			var r rune
			for _, h := range d.b[i+2 : i+6] {
				switch {
				case '0' <= h && h <= '9':
					h -= '0'
				case 'a' <= h && h <= 'f':
					h -= 'a' - 10
				case 'A' <= h && h <= 'F':
					h -= 'A' - 10
				default:
					return "", false
				}
				r = r<<4 | rune(h)
			}
			if 0xD800 <= r && r < 0xE000 {
				return "", false // surrogates: json.Unmarshal pairs or replaces them
			}
			sb.WriteRune(r)
			i += 4
		default:
			return "", false
		}
		i += 2
		run, ascii = i, true
	}
	return "", false
}

// number reads an integer of at most 19 digits; fractions and exponents
// are left to json.Unmarshal (which refuses them for integer fields).
func (d *lineDecoder) number() (neg bool, v uint64, ok bool) {
	i := d.i
	if i < len(d.b) && d.b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(d.b) && '0' <= d.b[i] && d.b[i] <= '9'; i++ {
		if i-start == 19 {
			return false, 0, false
		}
		v = v*10 + uint64(d.b[i]-'0')
	}
	switch {
	case i == start, d.b[start] == '0' && i-start > 1:
		return false, 0, false
	case i < len(d.b) && (d.b[i] == '.' || d.b[i] == 'e' || d.b[i] == 'E'):
		return false, 0, false
	}
	d.i = i
	return neg, v, true
}

func (d *lineDecoder) uint32() (uint32, bool) {
	neg, v, ok := d.number()
	return uint32(v), ok && !neg && v <= math.MaxUint32
}

func (d *lineDecoder) int32() (int32, bool) {
	neg, v, ok := d.number()
	if neg {
		return int32(-int64(v)), ok && v <= -math.MinInt32
	}
	return int32(v), ok && v <= math.MaxInt32
}

func (d *lineDecoder) int() (int, bool) {
	neg, v, ok := d.number()
	if neg {
		return int(-v), ok && v <= -math.MinInt
	}
	return int(v), ok && v <= math.MaxInt
}

func (d *lineDecoder) bool() (bool, bool) {
	if d.literal("true") {
		return true, true
	}
	return false, d.literal("false")
}

// lsn reads "X/Y" as TextLSN.UnmarshalText would, for hexadecimal halves
// of 1 to 8 digits (all LSN.String writes).
func (d *lineDecoder) lsn() (TextLSN, bool) {
	s, ok := d.str()
	if !ok {
		return 0, false
	}
	hi, lo, found := strings.Cut(s, "/")
	h, ok1 := hex32(hi)
	l, ok2 := hex32(lo)
	return TextLSN(uint64(h)<<32 | uint64(l)), found && ok1 && ok2
}

func hex32(s string) (uint32, bool) {
	if len(s) == 0 || len(s) > 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		h := s[i]
		switch {
		case '0' <= h && h <= '9':
			h -= '0'
		case 'a' <= h && h <= 'f':
			h -= 'a' - 10
		case 'A' <= h && h <= 'F':
			h -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(h)
	}
	return v, true
}

// Record fields, for spotting a repeated one (json.Unmarshal's business).
const (
	fT = 1 << iota
	fRel
	fXID
	fLSN
	fEnd
	fTime
	fN
	fO
	fR
	fOld
	fOldKind
	fNew
	fRels
	fCascade
	fRestartIdentity
	fPrefix
	fContent
	fSQL
	fNote
)

// decodeLine decodes what AppendRecord writes (its fields in any order)
// into the zero record r; false means "not that, ask json.Unmarshal".
func decodeLine(r *Record, line []byte, sl *slabs) bool {
	d := lineDecoder{b: line, sl: sl}
	t := changeType(line)
	if len(line) <= shareMax {
		d.s = sl.lineText(line, t != "")
	}
	if t != "" && d.change(r, t) {
		return d.rest()
	}
	*r, d.i = Record{}, 0
	ok := d.object(func(k []byte) (f uint32, ok bool) {
		switch string(k) {
		case "t":
			f = fT
			r.T, ok = d.str()
		case "rel":
			f = fRel
			r.Relation, ok = d.relation()
		case "xid":
			f = fXID
			r.XID, ok = d.uint32()
		case "lsn":
			f = fLSN
			r.CommitLSN, ok = d.lsn()
		case "end":
			f = fEnd
			r.EndLSN, ok = d.lsn()
		case "time":
			f = fTime
			r.CommitTime, ok = d.time()
		case "n":
			f = fN
			r.Changes, ok = d.int()
		case "o":
			f = fO
			r.Ordinal, ok = d.int()
		case "r":
			f = fR
			r.RelOID, ok = d.uint32()
		case "old":
			f = fOld
			r.Old, ok = d.values()
		case "old_kind":
			f = fOldKind
			r.OldKind, ok = d.str()
		case "new":
			f = fNew
			r.New, ok = d.values()
		case "rels":
			f = fRels
			r.RelOIDs, ok = d.oids()
		case "cascade":
			f = fCascade
			r.Cascade, ok = d.bool()
		case "restart_identity":
			f = fRestartIdentity
			r.RestartIdentity, ok = d.bool()
		case "prefix":
			f = fPrefix
			r.Prefix, ok = d.str()
		case "content":
			f = fContent
			r.Content, ok = d.str()
		case "sql":
			f = fSQL
			r.SQL, ok = d.str()
		case "note":
			f = fNote
			r.Note, ok = d.str()
		}
		return f, ok
	})
	return ok && d.rest()
}

// rest: nothing but whitespace follows.
func (d *lineDecoder) rest() bool {
	for ; d.i < len(d.b); d.i++ {
		switch d.b[d.i] {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// change decodes the usual line of an insert, update or delete of type
// t (changeType): its fields in the order AppendRecord writes them, with
// the parsers the general loop uses, but without looking each key up
// (most of a segment is such lines). False leaves the line to the
// general loop.
func (d *lineDecoder) change(r *Record, t string) bool {
	r.T = t
	d.i = len(changePrefix) + 2
	ok := true
	if ok && d.literal(`,"o":`) {
		r.Ordinal, ok = d.int()
	}
	if ok && d.literal(`,"r":`) {
		r.RelOID, ok = d.uint32()
	}
	if ok && d.literal(`,"old":`) {
		r.Old, ok = d.values()
	}
	if ok && d.literal(`,"old_kind":`) {
		r.OldKind, ok = d.str()
	}
	if ok && d.literal(`,"new":`) {
		r.New, ok = d.values()
	}
	return ok && d.next('}')
}

// time reads a commit time as *time.Time's UnmarshalJSON does (it gets the
// string's raw bytes: with an escape in them, it fails).
func (d *lineDecoder) time() (*time.Time, bool) {
	if !d.next('"') {
		return nil, false
	}
	start := d.i
	end := bytes.IndexByte(d.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	end += start
	for _, c := range d.b[start:end] {
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, false
		}
	}
	t := new(time.Time)
	if t.UnmarshalText(d.b[start:end]) != nil {
		return nil, false
	}
	d.i = end + 1
	return t, true
}

func (d *lineDecoder) values() ([]Value, bool) {
	if !d.next('[') {
		return nil, false
	}
	if d.next(']') {
		return []Value{}, true
	}
	var buf [16]Value
	vals := buf[:0]
	for {
		var v Value
		switch d.peek() {
		case 'n':
			if !d.literal("null") {
				return nil, false
			}
			v.Kind = Null
		case '"':
			s, ok := d.str()
			if !ok {
				return nil, false
			}
			v = Value{Kind: Text, Text: s}
		case '{':
			if d.literal(`{"toast":"unchanged"}`) {
				v.Kind = Unchanged
				break
			}
			s, ok := d.b64()
			if !ok {
				return nil, false
			}
			v = Value{Kind: Text, Text: s}
		default:
			return nil, false
		}
		vals = append(vals, v)
		if d.next(']') {
			break
		}
		if !d.next(',') {
			return nil, false
		}
	}
	out := d.sl.values(len(vals))
	copy(out, vals)
	return out, true
}

// b64 reads {"b64":"..."}, a value that is not UTF-8.
func (d *lineDecoder) b64() (string, bool) {
	if !d.literal(`{"b64":"`) {
		return "", false
	}
	start := d.i
	for d.i < len(d.b) && base64Char[d.b[d.i]] {
		d.i++
	}
	end := d.i
	if !d.literal(`"}`) {
		return "", false
	}
	raw, err := base64.StdEncoding.AppendDecode(nil, d.b[start:end])
	if err != nil {
		return "", false
	}
	if d.sl != nil {
		d.sl.notUTF8++
	}
	return string(raw), true
}

var base64Char = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = true
	}
	return t
}()

func (d *lineDecoder) oids() ([]uint32, bool) {
	if !d.next('[') {
		return nil, false
	}
	oids := []uint32{}
	if d.next(']') {
		return oids, true
	}
	for {
		oid, ok := d.uint32()
		if !ok {
			return nil, false
		}
		oids = append(oids, oid)
		if d.next(']') {
			return oids, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}

// object reads {"key":value,...}. field reads the value of key k and
// returns the key's flag, 0 for a key it does not know; an unknown or
// repeated key, or a value field could not read, is false.
func (d *lineDecoder) object(field func(k []byte) (uint32, bool)) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	var seen uint32
	for {
		k, ok := d.key()
		if !ok {
			return false
		}
		f, ok := field(k)
		if !ok || f == 0 || seen&f != 0 {
			return false
		}
		seen |= f
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

func (d *lineDecoder) relation() (*Relation, bool) {
	rel := new(Relation)
	ok := d.object(func(k []byte) (f uint32, ok bool) {
		switch string(k) {
		case "oid":
			f = 1
			rel.OID, ok = d.uint32()
		case "schema":
			f = 2
			rel.Schema, ok = d.str()
		case "name":
			f = 4
			rel.Name, ok = d.str()
		case "ident":
			f = 8
			rel.ReplicaIdentity, ok = d.str()
		case "cols":
			f = 16
			rel.Columns, ok = d.columns()
		}
		return f, ok
	})
	if !ok {
		return nil, false
	}
	return rel, true
}

func (d *lineDecoder) columns() ([]Column, bool) {
	if d.literal("null") {
		return nil, true
	}
	if !d.next('[') {
		return nil, false
	}
	cols := []Column{}
	if d.next(']') {
		return cols, true
	}
	for {
		var c Column
		ok := d.object(func(k []byte) (f uint32, ok bool) {
			switch string(k) {
			case "name":
				f = 1
				c.Name, ok = d.str()
			case "type_oid":
				f = 2
				c.TypeOID, ok = d.uint32()
			case "type":
				f = 4
				c.Type, ok = d.str()
			case "typmod":
				f = 8
				c.TypMod, ok = d.int32()
			case "key":
				f = 16
				c.Key, ok = d.bool()
			}
			return f, ok
		})
		if !ok {
			return nil, false
		}
		cols = append(cols, c)
		if d.next(']') {
			return cols, true
		}
		if !d.next(',') {
			return nil, false
		}
	}
}
