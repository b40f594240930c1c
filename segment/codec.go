package segment

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
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
